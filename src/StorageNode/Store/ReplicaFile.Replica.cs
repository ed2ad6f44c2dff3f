namespace Slab.Store;

// A local replica file is the volume layer's replica target (see Store.Seam.cs).
public sealed partial class ReplicaFile : IReplicaTarget;
