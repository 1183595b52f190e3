//! Every WGSL module in `shaders/` (as composed by the engine) parses and validates
//! with naga, and every `.wgsl` file on disk is used by some module.

use rsp::gpu::shaders::{source, source_typed, Skeleton, SHADERS};
use rsp::gpu::DType;

#[test]
fn every_gemm_op_validates_with_every_skeleton_and_storage_type() {
    for (name, _, kind) in SHADERS {
        if !kind.is_gemm() {
            assert!(source_typed(name, &[], Skeleton::Tiled).is_none());
            continue;
        }
        assert!(source_typed(name, &[], Skeleton::None).is_none());
        for skeleton in Skeleton::GEMM {
            if !skeleton.fits_op(name) {
                assert!(source_typed(name, &[], skeleton).is_none());
                continue;
            }
            for dtype in [DType::F32, DType::F16] {
                let src = source_typed(name, &[dtype; 8], skeleton).unwrap();
                let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
                    panic!(
                        "{name} {skeleton:?}: WGSL parse error:\n{}",
                        e.emit_to_string(&src)
                    )
                });
                let mut caps = naga::valid::Capabilities::SHADER_FLOAT16
                    | naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
                if skeleton.needs_subgroups() {
                    caps |= naga::valid::Capabilities::SUBGROUP;
                }
                if skeleton.needs_cooperative_matrix() {
                    caps |= naga::valid::Capabilities::COOPERATIVE_MATRIX;
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

/// `--precision f16` binds f16 activations and relevance to any kernel, so every
/// tensor binding of every shader is typed (`array<name_t>`, read through `f32(...)`);
/// only GEMM scratch (`winograd_gemm.wgsl`'s transformed tiles) is always f32. Each
/// module validates with all of its typed bindings in f16.
#[test]
fn every_tensor_binding_is_typed_and_validates_in_f16() {
    for (name, src, kind) in SHADERS {
        let typed = rsp::gpu::shaders::typed_bindings(name);
        let untyped: Vec<&str> = src
            .lines()
            .filter(|l| l.contains("var<storage") && l.contains("array<f32>"))
            .collect();
        if *name == "winograd_gemm" {
            assert!(typed.is_empty());
            continue;
        }
        assert!(
            untyped.is_empty(),
            "{name}: untyped tensor bindings {untyped:?}"
        );
        assert!(!typed.is_empty(), "{name}: no typed binding");
        let skeleton = if kind.is_gemm() {
            Skeleton::Tiled
        } else {
            Skeleton::None
        };
        let src = source_typed(name, &[DType::F16; 8], skeleton).unwrap();
        for (alias, _) in typed {
            assert!(
                src.contains(&format!("alias {alias} = f16;")),
                "{name}: {alias}"
            );
        }
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: WGSL parse error:\n{}", e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::SHADER_FLOAT16,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validation error:\n{}", e.emit_to_string(&src)));
    }
    let fwd = rsp::gpu::shaders::typed_bindings("conv2d_fwd");
    assert_eq!(
        fwd,
        [
            ("x_t", 0),
            ("weight_t", 1),
            ("bias_or_r_t", 2),
            ("bounds_t", 3),
            ("out_t", 4)
        ]
    );
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
