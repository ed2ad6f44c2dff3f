using System.Runtime.Versioning;
using Slab.Host;
using Xunit;

using Slab.Common;

namespace Slab.Tests.Host;

[SupportedOSPlatform("linux")]
public sealed class HostParsingTests
{
    [Fact]
    public void Mountinfo_lines_parse_with_escapes()
    {
        var entry = MountTable.Parse(@"36 35 7:3 / /mnt/with\040space rw,relatime shared:1 - ext4 /dev/loop3 rw");

        Assert.NotNull(entry);
        Assert.Equal((7, 3), (entry.Major, entry.Minor));
        Assert.Equal("/mnt/with space", entry.MountPoint);
        Assert.Equal("ext4", entry.FilesystemType);
        Assert.Equal("/dev/loop3", entry.Source);
        Assert.Equal(@"a\b", MountTable.Unescape(@"a\134b"));
        Assert.Null(MountTable.Parse("garbage"));
    }

    [Fact]
    public void Own_mount_table_has_the_root()
    {
        Assert.Contains(MountTable.Read(), m => m.MountPoint == "/");
    }

    [Fact]
    public void Nbd_uri_escapes_export_and_socket()
    {
        Assert.Equal("nbd+unix:///vol%201?socket=/run/slab/attach%20x.sock", NbdFuseLoopAttacher.BuildUri("/run/slab/attach x.sock", "vol 1"));
        Assert.Equal("nbd+unix:///?socket=/run/a.sock", NbdFuseLoopAttacher.BuildUri("/run/a.sock", ""));
    }

    [Fact]
    public async Task Kernel_nbd_grow_is_a_typed_error_and_detach_of_a_gone_device_cleans_up()
    {
        var root = Directory.CreateTempSubdirectory("slab-host-knbd-").FullName;
        try
        {
            var options = new HostOptions(root, AttachMethodPreference.KernelNbd);
            var layout = new AttachmentLayout(options);
            Directory.CreateDirectory(layout.DirectoryOf("vol1"));
            AttachmentLayout.Write(layout.StateFileOf("vol1"), new AttachmentState
            {
                VolumeName = "vol1",
                Method = AttachMethod.KernelNbd,
                NbdUnixSocket = "/run/slab/attach.sock",
                ExportName = "vol1",
                SizeBytes = 1 << 20,
                DevicePath = "/dev/nbd15",
            });
            var attacher = new KernelNbdAttacher(options);

            Assert.Equal("kernel-nbd", (await attacher.GetAsync("vol1", CancellationToken.None))!.MethodName);
            var grow = await Assert.ThrowsAsync<HostAttachException>(() => attacher.ResizeAsync("vol1", 2 << 20, CancellationToken.None));
            Assert.Equal(HostAttachError.GrowUnsupported, grow.Error);

            await attacher.DetachAsync("vol1", CancellationToken.None);
            Assert.False(Directory.Exists(layout.DirectoryOf("vol1")));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
