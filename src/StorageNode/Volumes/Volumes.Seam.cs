namespace Slab.Volumes;

// The volume layer: one VolumeController per open volume on the node where it is used. A controller
// is a block target over its replica targets (Store.IReplicaTarget; one local replica until
// replication arrives); it drains writes for snapshots and carries the volume's epoch.
// VolumeManager owns the controllers, validates every request, and is the IExportCatalog that the
// NBD frontend serves. AttachExportCatalog is the private catalog for host attachments.
