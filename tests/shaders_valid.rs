//! Every WGSL module in `shaders/` (as composed by the engine) parses and validates
//! with naga, and every `.wgsl` file on disk is used by some module.

use rsp::gpu::shaders::{source, source_typed, Skeleton, SHADERS};
use rsp::gpu::DType;

#[test]
fn every_gemm_op_validates_with_every_skeleton_and_weight_type() {
    for (name, _, gemm) in SHADERS {
        if !gemm {
            assert!(source_typed(name, &[], Skeleton::Tiled).is_none());
            continue;
        }
        assert!(source_typed(name, &[], Skeleton::None).is_none());
        for skeleton in Skeleton::GEMM {
            for dtype in [DType::F32, DType::F16] {
                let src = source_typed(name, &[dtype], skeleton).unwrap();
                let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
                    panic!(
                        "{name} {skeleton:?}: WGSL parse error:\n{}",
                        e.emit_to_string(&src)
                    )
                });
                let mut caps = naga::valid::Capabilities::SHADER_FLOAT16;
                if skeleton.needs_subgroups() {
                    caps |= naga::valid::Capabilities::SUBGROUP;
                }
                let mut validator =
                    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
                if skeleton.needs_subgroups() {
                    validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
                    validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
                }
                validator.validate(&module).unwrap_or_else(|e| {
                    panic!(
                        "{name} {skeleton:?}: validation error:\n{}",
                        e.emit_to_string(&src)
                    )
                });
            }
        }
    }
}

#[test]
fn all_shaders_parse_and_validate_with_naga() {
    for (name, _, _) in SHADERS {
        let src = source(name).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: WGSL parse error:\n{}", e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validation error:\n{}", e.emit_to_string(&src)));
    }
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let all: String = SHADERS.iter().map(|(_, s, _)| *s).collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        if stem.starts_with("gemm_") || stem == "conv_common" {
            continue; // composed into the convolution kernels
        }
        assert!(
            SHADERS.iter().any(|(n, _, _)| *n == stem) || all.contains(&stem),
            "shaders/{stem}.wgsl is not registered in src/gpu/shaders.rs"
        );
    }
}
