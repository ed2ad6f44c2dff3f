using Slab.Csi.Hosting;

return await CsiHost.RunAsync(args).ConfigureAwait(false);
