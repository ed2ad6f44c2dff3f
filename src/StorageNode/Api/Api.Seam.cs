namespace Slab.Api;

// The API layer: gRPC services (proto/slab/v1/slab.proto) over the volume layer, served on the
// root-only unix socket RUN/api.sock and TCP 9501. Services only translate: ProtoMapping turns
// volume-layer records into messages, ErrorMappingInterceptor turns SlabException and
// BlockTargetException codes into gRPC statuses. No business rule lives here.
//
// Api/Docker: Docker's volume plugin protocol v1 on its own unix socket (HTTP/1.1), a client of the
// gRPC API above through ISlabVolumeApi; what it adds is Docker's shape: PX's options and inline
// spec, and mounts counted by Docker's mount IDs (docs/docker.md).
