namespace Slab.Api;

// The API layer: gRPC services (proto/slab/v1/slab.proto) over the volume layer, served on the
// root-only unix socket RUN/api.sock and TCP 9501. Services only translate: ProtoMapping turns
// volume-layer records into messages, ErrorMappingInterceptor turns SlabException and
// BlockTargetException codes into gRPC statuses. No business rule lives here.
