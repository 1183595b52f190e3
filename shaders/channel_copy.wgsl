// Copies `count` channels of every image between two NCHW tensors of the same batch
// and spatial size: out[n, out_offset + c, ·] = src[n, src_offset + c, ·]. A channel
// concatenation is one copy per input into its slice of the output; its backward
// (every method's: the relevance of each input is its own channel slice) one copy per
// input out of the slice.

struct Params {
    count: u32,
    plane: u32,
    src_channels: u32,
    src_offset: u32,
    out_channels: u32,
    out_offset: u32,
    numel: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> src: array<src_t>;
@group(0) @binding(1) var<storage, read_write> out: array<out_t>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.numel) {
        return;
    }
    let s = idx % p.plane;
    let c = (idx / p.plane) % p.count;
    let n = idx / (p.plane * p.count);
    let src_at = (n * p.src_channels + p.src_offset + c) * p.plane + s;
    let out_at = (n * p.out_channels + p.out_offset + c) * p.plane + s;
    out[out_at] = out_t(f32(src[src_at]));
}
