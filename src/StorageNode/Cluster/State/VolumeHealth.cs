namespace Slab.Cluster.State;

/// <summary>A cluster volume's health as people see it (<c>volume inspect/list</c>, <c>/metrics</c>).</summary>
public enum VolumeHealth
{
    /// <summary>Every replica is in sync on a node that is online, and the volume has all its replicas.</summary>
    Up,

    /// <summary>At least one in-sync replica on an online node, but not every replica counts (or one is missing).</summary>
    Degraded,

    /// <summary>No in-sync replica on an online node: I/O waits for one to return.</summary>
    Down,
}

/// <summary>The one rule for <see cref="VolumeHealth"/>, from the replica states and node liveness. Pure.</summary>
public static class VolumeHealthRules
{
    /// <summary>Replicas that count for the volume's I/O now: in sync, on a node <paramref name="isAlive"/> says is up.</summary>
    public static int UsableReplicas(this VolumeInfo volume, Func<string, bool> isAlive)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(isAlive);
        var usable = 0;
        foreach (var replica in volume.Replicas)
        {
            if (replica.State == ReplicaState.InSync && isAlive(replica.NodeId))
            {
                usable++;
            }
        }

        return usable;
    }

    /// <summary>The volume's health given which nodes are alive.</summary>
    public static VolumeHealth HealthOf(this VolumeInfo volume, Func<string, bool> isAlive)
    {
        var usable = volume.UsableReplicas(isAlive);
        return usable == 0 ? VolumeHealth.Down
            : usable < volume.Replicas.Length || volume.Replicas.Length < volume.Spec.Repl ? VolumeHealth.Degraded
            : VolumeHealth.Up;
    }
}
