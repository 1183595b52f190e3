//! Recording one chosen variant of a GEMM problem: one dispatch, or with the scratch
//! passes its [`Recording`] asks for.

use super::op::GemmProblem;
use super::scratch::{record_planes, record_winograd, PackedSizes};
use super::variants::{GemmKernel, Recording};
use crate::gpu::shaders::Skeleton;
use crate::gpu::{Binding, Recorder, ShaderRef};

/// Records `kernel` for `p` with the op's `bindings`: one dispatch; for packed
/// operands the packing passes into scratch and the GEMM over them (for the matrix
/// units, [`record_planes`]); for Winograd the
/// transforms, the 16 GEMMs and the output transform ([`record_winograd`]).
pub(crate) fn record(
    rec: &mut Recorder,
    kernel: GemmKernel,
    p: &GemmProblem,
    bindings: &[Binding],
) {
    let packed_a = match kernel.recording {
        Recording::Winograd => return record_winograd(rec, p, bindings),
        Recording::Planes => return record_planes(rec, kernel, p, bindings),
        Recording::Single | Recording::HalfGrid => {
            return p.record_with(rec, kernel, bindings, &[])
        }
        Recording::Packed { packed_a } => packed_a,
    };
    let packed = PackedSizes::of(p, kernel.block);
    let ctx = rec.ctx;
    let a = ctx.empty(&[if packed_a { packed.a_len() } else { 0 }]);
    let b = ctx.empty(&[packed.b_len()]);
    let pack = ShaderRef {
        name: p.op.shader(),
        skeleton: Skeleton::Pack,
        unchecked: true,
    };
    let mut passes = vec![(&b, 1.0, packed.pack_b_groups())];
    if packed_a {
        passes.insert(0, (&a, 0.0, packed.pack_a_groups()));
    }
    for (operand, pack_b, grid) in passes {
        let mut c = p.constants();
        c.push(("PACK_B", pack_b));
        rec.dispatch_with_extra(
            pack,
            &c,
            bindings,
            p.params,
            &[Binding::write(operand)],
            grid,
        );
    }
    p.record_with(
        rec,
        kernel,
        bindings,
        &[Binding::read(&a), Binding::read(&b)],
    );
}
