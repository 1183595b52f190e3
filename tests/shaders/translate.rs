//! Every WGSL module the engine builds, with the override constants and binding types
//! it is really built with, through every naga writer wgpu's backends use: SPIR-V
//! (Vulkan), MSL (Metal), HLSL (DX12) and GLSL (OpenGL, desktop 4.50 and ES 3.10), with
//! the options those backends pass. A module translates on every backend whose
//! adapters can offer the features it needs ([`ModuleSpec::features`]); the features
//! no adapter of a backend offers (f16 and subgroups on GL, cooperative matrices on
//! DX12 and GL) are exactly what keeps the module off it. Where `spirv-val` and
//! `glslangValidator` are installed (CI installs them), their verdicts count too.
//!
//! The modules are those built while explaining the three golden cases (and the ONNX
//! DenseNet fixture, for the concatenation and windowed pooling shaders) with every
//! method in f32, `--precision f16` and `--weights-dtype f16`, with the heuristic
//! kernels and with each exact GEMM variant and Winograd forced; plus every op ×
//! skeleton × f32/f16 at its default override values, and the cooperative-matrix
//! variant (which lavapipe cannot run) with every op's real constants. The list is also
//! written as a manifest for the Dawn/Tint check (`tools/tint/check.mjs`).

use crate::common;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use naga::valid::{Capabilities, ShaderStages, SubgroupOperationSet, ValidationFlags};
use rsp::explain::{explain, Method, Request};
use rsp::gpu::shaders::{Skeleton, SHADERS};
use rsp::gpu::{ContextOptions, DType, GpuContext, ModuleSpec, Precision, ShaderRef};
use rsp::models::gpu::GpuModel;
use rsp::models::weights::TensorFile;
use rsp::ops::gemm::{GemmKernel, GemmTile, Offer, Recording};
use rsp::{Init, Model};

/// Where the manifest for `node tools/tint/check.mjs DIR` is written.
fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wgsl-modules")
}

/// Every kernel variant of the GEMM family (the test hook builds the 64×64 tiled
/// kernel's module).
fn all_variants() -> Vec<GemmKernel> {
    GemmKernel::all()
        .filter(|k| k.offer != Offer::TestHook)
        .collect()
}

/// The names of the fallback tile's constants (stripped to find an op's own).
fn tile_constant_names() -> Vec<&'static str> {
    GemmKernel::tiled(GemmTile::LARGE, false)
        .constants()
        .iter()
        .map(|(k, _)| *k)
        .collect()
}

/// The modules `kernel` builds for the GEMM op of `fallback` (a module built on the
/// checked tiled fallback), as `ops::gemm::record` composes them: the op's own
/// constants, then the variant's; the subgroup kernel's packing passes; Winograd's
/// transforms (where it applies) and its GEMMs on every tile.
fn variant_modules(kernel: GemmKernel, fallback: &ModuleSpec) -> Vec<ModuleSpec> {
    let op = fallback.shader.name;
    let tile_names = tile_constant_names();
    let own: Vec<(&'static str, f64)> = fallback
        .constants
        .iter()
        .filter(|(k, _)| !tile_names.contains(k))
        .copied()
        .collect();
    let with = |extra: &[(&'static str, f64)]| {
        let mut c = own.clone();
        c.extend_from_slice(extra);
        c
    };
    let module = |shader: ShaderRef, constants| ModuleSpec {
        shader,
        types: fallback.types.clone(),
        constants,
    };
    match kernel.recording {
        Recording::Winograd => {
            let constant = |name| own.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            let mode = constant("MODE").unwrap_or(0.0);
            let applies = op == "conv2d_fwd"
                && (mode == 0.0 || mode == 1.0)
                && constant("KH") == Some(3.0)
                && constant("KW") == Some(3.0)
                && constant("STRIDE") == Some(1.0);
            if !applies {
                return Vec::new();
            }
            let mut out: Vec<ModuleSpec> = (0..3)
                .map(|pass| module(kernel.shader(op), with(&[("PASS", pass as f64)])))
                .collect();
            let per_image = [
                ("PER_Z_WEIGHTS", (mode == 1.0) as u8 as f64),
                ("Z_PER_IMAGE", if mode == 1.0 { 2.0 } else { 1.0 }),
            ];
            for tile in GemmTile::ALL {
                let gemm = GemmKernel::tiled(tile, true);
                let mut constants = per_image.to_vec();
                constants.extend_from_slice(gemm.constants());
                out.push(ModuleSpec {
                    shader: gemm.shader("winograd_gemm"),
                    types: Vec::new(),
                    constants,
                });
            }
            out
        }
        Recording::Packed { packed_a } => {
            let pack = ShaderRef {
                name: op,
                skeleton: Skeleton::Pack,
                unchecked: true,
            };
            let mut out = Vec::new();
            if packed_a {
                out.push(module(pack, with(&[("PACK_B", 0.0)])));
            }
            out.push(module(pack, with(&[("PACK_B", 1.0)])));
            out.push(module(kernel.shader(op), with(kernel.constants())));
            out
        }
        Recording::Planes => {
            let planes = ShaderRef {
                name: op,
                skeleton: Skeleton::Planes,
                unchecked: true,
            };
            let mut out = Vec::new();
            for pack_b in [0.0, 1.0] {
                for pass in [0.0, 1.0] {
                    out.push(module(
                        planes,
                        with(&[
                            ("PACK_B", pack_b),
                            ("PASS", pass),
                            ("SPLIT", kernel.split_planes() as u8 as f64),
                            ("COL_PAD", kernel.block.1 as f64),
                        ]),
                    ));
                }
            }
            out.push(module(kernel.shader(op), with(kernel.constants())));
            out
        }
        Recording::Single | Recording::HalfGrid => {
            vec![module(kernel.shader(op), with(kernel.constants()))]
        }
    }
}

/// RSP with both inits and every baseline on the three golden cases.
fn explain_everything(ctx: &GpuContext, models: &[(Model, rsp::Tensor)]) {
    let mut requests = vec![
        Request::default(),
        Request {
            init: Init::Comparative { k: 3 },
            ..Request::default()
        },
    ];
    requests.extend(Method::ALL[1..].iter().map(|&m| Request::method(m, None)));
    for (model, input) in models {
        let gm = GpuModel::upload(ctx, model);
        for req in &requests {
            explain(ctx, &gm, input, req).unwrap();
        }
    }
}

/// Whether `spec` was built on the checked tiled fallback (a GEMM op's heuristic
/// kernel).
fn is_fallback(spec: &ModuleSpec) -> bool {
    spec.shader.skeleton == Skeleton::Tiled && !spec.shader.unchecked
}

/// The modules of every context described in the module doc, deduplicated.
fn built_modules() -> Vec<ModuleSpec> {
    let mut models: Vec<(Model, rsp::Tensor)> = common::GOLDEN_CASES
        .iter()
        .map(|case| {
            let f = common::golden(case);
            (Model::from_tensors(&f).unwrap(), common::get(&f, "input"))
        })
        .collect();
    // The ONNX DenseNet fixture: concatenation, windowed average pool.
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx");
    let f = TensorFile::read(&onnx.join("densenet.expected.safetensors")).unwrap();
    models.push((
        Model::from_file(&onnx.join("densenet.legacy.onnx")).unwrap(),
        common::get(&f, "input"),
    ));
    let mut all: Vec<ModuleSpec> = Vec::new();
    fn add(all: &mut Vec<ModuleSpec>, specs: Vec<ModuleSpec>) {
        for s in specs {
            if !all.contains(&s) {
                all.push(s);
            }
        }
    }
    let storage = [
        ContextOptions::default(),
        ContextOptions {
            precision: Precision::F16,
            ..Default::default()
        },
        ContextOptions {
            weights: DType::F16,
            ..Default::default()
        },
    ];
    // The three storage modes explain side by side; their modules are added in order.
    let built: Vec<Vec<ModuleSpec>> = std::thread::scope(|scope| {
        let handles: Vec<_> = storage
            .iter()
            .map(|opts| {
                let models = &models;
                scope.spawn(move || {
                    let ctx = GpuContext::new(opts).unwrap();
                    explain_everything(&ctx, models);
                    ctx.built_modules()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an explaining thread panicked"))
            .collect()
    });
    for specs in built {
        add(&mut all, specs);
    }
    // Every variant on one module of each (op, binding types, mode): a variant's
    // skeleton constants change only its own code, the op's constants only the op's.
    let mut representatives: Vec<ModuleSpec> = Vec::new();
    for spec in all.iter().filter(|s| is_fallback(s)) {
        let key = |s: &ModuleSpec| {
            let mode = s
                .constants
                .iter()
                .find(|(k, _)| *k == "MODE")
                .map(|(_, v)| *v);
            (s.shader.name, s.types.clone(), mode.map(f64::to_bits))
        };
        if !representatives.iter().any(|r| key(r) == key(spec)) {
            representatives.push(spec.clone());
        }
    }
    let derived: Vec<ModuleSpec> = representatives
        .iter()
        .flat_map(|r| {
            all_variants()
                .into_iter()
                .flat_map(|k| variant_modules(k, r))
        })
        .collect();
    add(&mut all, derived);
    // Every op × skeleton × element type at the default override values.
    let mut defaults = Vec::new();
    for (name, _, kind) in SHADERS {
        let skeletons: Vec<Skeleton> = if kind.is_gemm() {
            Skeleton::GEMM
                .into_iter()
                .filter(|s| s.fits_op(name))
                .collect()
        } else {
            vec![Skeleton::None]
        };
        for skeleton in skeletons {
            for dtype in [DType::F32, DType::F16] {
                let typed = rsp::gpu::shaders::typed_bindings(name).len();
                defaults.push(ModuleSpec {
                    shader: ShaderRef {
                        name,
                        skeleton,
                        unchecked: skeleton != Skeleton::None,
                    },
                    types: vec![dtype; typed],
                    constants: Vec::new(),
                });
            }
        }
    }
    add(&mut all, defaults);
    all
}

/// The features wgpu offers on a backend's adapters at best.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl Backend {
    const ALL: [Backend; 4] = [Backend::Vulkan, Backend::Metal, Backend::Dx12, Backend::Gl];

    /// wgpu-hal 30: Vulkan offers all three; Metal f16, subgroups (MSL 2.1) and
    /// cooperative matrices (Apple7+, MSL 2.3); DX12 f16 (DXC, shader model 6.2) and
    /// wave operations; GL none of them.
    fn features(self) -> wgpu::Features {
        use wgpu::Features as F;
        match self {
            Backend::Vulkan | Backend::Metal => {
                F::SHADER_F16 | F::SUBGROUP | F::EXPERIMENTAL_COOPERATIVE_MATRIX
            }
            Backend::Dx12 => F::SHADER_F16 | F::SUBGROUP,
            Backend::Gl => F::empty(),
        }
    }
}

/// A module parsed, validated with the capabilities its features grant, and
/// specialised by its constants as wgpu does before handing it to a writer.
struct Specialised {
    module: naga::Module,
    info: naga::valid::ModuleInfo,
    /// Storage buffers the module declares (its pipeline layout binds them all).
    storage_buffers: u32,
}

impl Specialised {
    /// Bytes of workgroup memory the module declares.
    fn workgroup_bytes(&self) -> u32 {
        let mut layouter = naga::proc::Layouter::default();
        layouter
            .update(self.module.to_ctx())
            .expect("layout of a validated module");
        self.module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| layouter[v.ty].size)
            .sum()
    }
}

fn specialise(spec: &ModuleSpec) -> Result<Specialised, String> {
    let src = spec.source();
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let features = spec.features();
    let mut caps = Capabilities::empty();
    if features.contains(wgpu::Features::SHADER_F16) {
        // wgpu grants pack2x16float and unpack2x16float (`DownlevelFlags::
        // SHADER_F16_IN_F32`) on every backend, on Mesa's Vulkan drivers only with f16.
        caps |= Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    }
    if features.contains(wgpu::Features::SUBGROUP) {
        caps |= Capabilities::SUBGROUP;
    }
    if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        caps |= Capabilities::COOPERATIVE_MATRIX;
    }
    let storage_buffers = module
        .global_variables
        .iter()
        .filter(|(_, v)| matches!(v.space, naga::AddressSpace::Storage { .. }))
        .count() as u32;
    let mut validator = naga::valid::Validator::new(ValidationFlags::all(), caps);
    validator.subgroup_stages(ShaderStages::COMPUTE);
    validator.subgroup_operations(SubgroupOperationSet::all());
    let info = validator
        .validate(&module)
        .map_err(|e| e.emit_to_string(&src))?;
    let constants: naga::back::PipelineConstants = spec
        .constants
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, "main")),
        &constants,
    )
    .map_err(|e| format!("overrides: {e}"))?;
    Ok(Specialised {
        module: module.into_owned(),
        info: info.into_owned(),
        storage_buffers,
    })
}

/// Bounds checks as wgpu asks for them: none for modules built unchecked
/// (`create_shader_module_trusted`), else `Restrict`.
fn policies(spec: &ModuleSpec) -> naga::proc::BoundsCheckPolicies {
    let policy = if spec.shader.unchecked {
        naga::proc::BoundsCheckPolicy::Unchecked
    } else {
        naga::proc::BoundsCheckPolicy::Restrict
    };
    naga::proc::BoundsCheckPolicies {
        index: policy,
        buffer: policy,
        image_load: policy,
        binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
    }
}

/// One writer's output: text to hand to a validator, or SPIR-V words.
enum Output {
    Spirv(Vec<u32>),
    Glsl(String),
    Text,
}

fn write(
    backend: Backend,
    glsl_es: bool,
    spec: &ModuleSpec,
    s: &Specialised,
) -> Result<Output, String> {
    let (module, info) = (&s.module, &s.info);
    match backend {
        Backend::Vulkan => {
            let options = naga::back::spv::Options {
                lang_version: (1, 3),
                bounds_check_policies: policies(spec),
                zero_initialize_workgroup_memory:
                    naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
                force_loop_bounding: !spec.shader.unchecked,
                ..Default::default()
            };
            let pipeline = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: "main".to_string(),
            };
            naga::back::spv::write_vec(module, info, &options, Some(&pipeline))
                .map(Output::Spirv)
                .map_err(|e| e.to_string())
        }
        Backend::Metal => {
            let options = naga::back::msl::Options {
                lang_version: (2, 4),
                fake_missing_bindings: true,
                bounds_check_policies: policies(spec),
                zero_initialize_workgroup_memory: false,
                force_loop_bounding: !spec.shader.unchecked,
                ..Default::default()
            };
            let pipeline = naga::back::msl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, "main".to_string())),
                ..Default::default()
            };
            naga::back::msl::write_string(module, info, &options, &pipeline)
                .map(|_| Output::Text)
                .map_err(|e| e.to_string())
        }
        Backend::Dx12 => {
            let options = naga::back::hlsl::Options {
                shader_model: naga::back::hlsl::ShaderModel::V6_2,
                fake_missing_bindings: true,
                zero_initialize_workgroup_memory: false,
                restrict_indexing: !spec.shader.unchecked,
                force_loop_bounding: !spec.shader.unchecked,
                ..Default::default()
            };
            let pipeline = naga::back::hlsl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, "main".to_string())),
            };
            let mut out = String::new();
            naga::back::hlsl::Writer::new(&mut out, &options, &pipeline)
                .write(module, info, None)
                .map(|_| Output::Text)
                .map_err(|e| e.to_string())
        }
        Backend::Gl => {
            // wgpu numbers storage and uniform buffers in separate slot ranges.
            let mut binding_map = naga::back::glsl::BindingMap::default();
            let (mut storage, mut uniform) = (0u8, 0u8);
            for (_, var) in module.global_variables.iter() {
                let Some(binding) = var.binding else {
                    continue;
                };
                let counter = match var.space {
                    naga::AddressSpace::Uniform => &mut uniform,
                    _ => &mut storage,
                };
                binding_map.insert(binding, *counter);
                *counter += 1;
            }
            let options = naga::back::glsl::Options {
                version: if glsl_es {
                    naga::back::glsl::Version::Embedded {
                        version: 310,
                        is_webgl: false,
                    }
                } else {
                    naga::back::glsl::Version::Desktop(450)
                },
                writer_flags: naga::back::glsl::WriterFlags::ADJUST_COORDINATE_SPACE
                    | naga::back::glsl::WriterFlags::FORCE_POINT_SIZE,
                binding_map,
                zero_initialize_workgroup_memory: false,
            };
            let pipeline = naga::back::glsl::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: "main".to_string(),
                multiview: None,
            };
            let mut out = String::new();
            naga::back::glsl::Writer::new(
                &mut out,
                module,
                info,
                &options,
                &pipeline,
                policies(spec),
            )
            .and_then(|mut w| w.write())
            .map(|_| Output::Glsl(out))
            .map_err(|e| e.to_string())
        }
    }
}

/// Whether `tool --version` runs.
fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `tool args… file` on `bytes` written to a scratch file; the tool's complaint on
/// failure.
fn validate_with(tool: &str, args: &[&str], file: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(file, bytes).unwrap();
    let o = Command::new(tool).args(args).arg(file).output().unwrap();
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// The WebGPU feature names of a module's needs, for the Tint manifest.
fn webgpu_features(spec: &ModuleSpec) -> Vec<&'static str> {
    let f = spec.features();
    let mut out = Vec::new();
    if f.contains(wgpu::Features::SHADER_F16) {
        out.push("shader-f16");
    }
    if f.contains(wgpu::Features::SUBGROUP) {
        out.push("subgroups");
    }
    out
}

/// Writes every module but the cooperative-matrix ones (a wgpu extension no WebGPU
/// implementation has) and those needing more workgroup memory than WebGPU's default
/// limit (Dawn's null adapter offers no more; such variants are offered only on devices
/// that do, see `GemmKernel::supported`) with its manifest entry; returns how many.
fn write_tint_manifest(specs: &[ModuleSpec], beyond_default_limits: &HashSet<usize>) -> usize {
    let dir = manifest_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut entries = Vec::new();
    for (_, spec) in specs.iter().enumerate().filter(|(i, s)| {
        !s.shader.skeleton.needs_cooperative_matrix() && !beyond_default_limits.contains(i)
    }) {
        let file = format!("{:04}.wgsl", entries.len());
        std::fs::write(dir.join(&file), spec.source()).unwrap();
        let constants: BTreeMap<&str, f64> = spec.constants.iter().copied().collect();
        entries.push(serde_json::json!({
            "name": spec.label(),
            "file": file,
            "entry_point": "main",
            "constants": constants,
            "features": webgpu_features(spec),
        }));
    }
    let count = entries.len();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "modules": entries })).unwrap(),
    )
    .unwrap();
    count
}

/// `spirv-val`, if installed, and this worker's scratch file for it.
struct SpirvVal<'a> {
    installed: bool,
    file: &'a Path,
}

/// What translating one module found.
#[derive(Default)]
struct Checked {
    failures: Vec<String>,
    /// Backend × module pairs kept off for a feature the backend lacks, and of those how
    /// many a writer could not express anyway.
    kept_off: usize,
    inexpressible: usize,
    translated: usize,
    storage_buffers: u32,
    beyond_default_storage: bool,
    /// The GLSL written, `(what, text)`, for glslangValidator (run over all of them
    /// in a few batches afterwards: one process per text cost 0.14 s each).
    glsl: Vec<(String, String)>,
}

/// `spec` specialised and written for every backend (and GLSL ES) whose adapters can
/// offer its features, the SPIR-V checked by `spirv-val` where installed and the GLSL
/// kept for [`validate_glsl`].
fn check_module(spec: &ModuleSpec, default_storage: u32, spirv_val: &SpirvVal) -> Checked {
    let mut out = Checked::default();
    let label = spec.label();
    let s = match specialise(spec) {
        Ok(s) => s,
        Err(e) => {
            out.failures.push(format!("{label}: naga: {e}"));
            return out;
        }
    };
    out.storage_buffers = s.storage_buffers;
    out.beyond_default_storage = s.workgroup_bytes() > default_storage;
    for backend in Backend::ALL {
        let offered = backend.features().contains(spec.features());
        let variants: &[bool] = if backend == Backend::Gl {
            &[false, true]
        } else {
            &[false]
        };
        for &es in variants {
            let result = write(backend, es, spec, &s);
            if !offered {
                out.kept_off += 1;
                out.inexpressible += result.is_err() as usize;
                continue;
            }
            let what = format!(
                "{label} → {backend:?}{}",
                if es { " (ES 3.10)" } else { "" }
            );
            match result {
                Err(e) => out.failures.push(format!("{what}: {e}")),
                Ok(written) => {
                    out.translated += 1;
                    let checked = match written {
                        // Debian bookworm's spirv-val (2023.1) predates
                        // SPV_KHR_cooperative_matrix.
                        Output::Spirv(words)
                            if spirv_val.installed
                                && !spec.shader.skeleton.needs_cooperative_matrix() =>
                        {
                            validate_with(
                                "spirv-val",
                                &["--target-env", "vulkan1.1"],
                                spirv_val.file,
                                bytemuck::cast_slice(&words),
                            )
                        }
                        Output::Glsl(text) => {
                            out.glsl.push((what.clone(), text));
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = checked {
                        out.failures.push(format!("{what}: {e}"));
                    }
                }
            }
        }
    }
    out
}

/// glslangValidator over every distinct GLSL text (many modules write the same), the
/// first module that wrote it naming it: batches of files per process, on `workers`
/// threads; a failing batch is checked again file by file to name the culprits.
fn validate_glsl<'a>(
    written: impl Iterator<Item = &'a (String, String)>,
    scratch: &Path,
    workers: usize,
) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::new();
    let distinct: Vec<&(String, String)> = written.filter(|(_, t)| seen.insert(t)).collect();
    let files: Vec<PathBuf> = distinct
        .iter()
        .enumerate()
        .map(|(i, (_, text))| {
            let path = scratch.join(format!("g{i}.comp"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    const BATCH: usize = 100;
    let batches: Vec<std::ops::Range<usize>> = (0..files.len())
        .step_by(BATCH)
        .map(|start| start..(start + BATCH).min(files.len()))
        .collect();
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for w in 0..workers {
            let (batches, files, distinct, failures) = (&batches, &files, &distinct, &failures);
            scope.spawn(move || {
                for range in batches.iter().skip(w).step_by(workers) {
                    let batch = Command::new("glslangValidator")
                        .args(["-S", "comp"])
                        .args(&files[range.clone()])
                        .output()
                        .unwrap();
                    if batch.status.success() {
                        continue;
                    }
                    let mut named = 0;
                    for i in range.clone() {
                        let text = std::fs::read(&files[i]).unwrap();
                        let what = &distinct[i].0;
                        if let Err(e) =
                            validate_with("glslangValidator", &["-S", "comp"], &files[i], &text)
                        {
                            failures.lock().unwrap().push(format!("{what}: {e}"));
                            named += 1;
                        }
                    }
                    // A batch that failed with no file failing alone still fails.
                    if named == 0 {
                        failures.lock().unwrap().push(format!(
                            "glslangValidator on {range:?}: {}{}",
                            String::from_utf8_lossy(&batch.stdout),
                            String::from_utf8_lossy(&batch.stderr)
                        ));
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

#[test]
fn every_built_module_translates_for_every_backend_that_can_run_it() {
    let t0 = std::time::Instant::now();
    let specs = built_modules();
    println!("collected {} modules in {:?}", specs.len(), t0.elapsed());
    let scratch = tempfile::tempdir().unwrap();
    let spirv_val = installed("spirv-val");
    let glslang = Command::new("glslangValidator")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    let default_storage = wgpu::Limits::default().max_compute_workgroup_storage_size;
    // Every module is independent: the workers take every `workers`-th one, each with
    // its own scratch file for spirv-val.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let checked: Vec<Checked> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (specs, scratch) = (&specs, scratch.path());
                scope.spawn(move || {
                    let file = scratch.join(format!("m{w}.spv"));
                    let tool = SpirvVal {
                        installed: spirv_val,
                        file: &file,
                    };
                    (w..specs.len())
                        .step_by(workers)
                        .map(|index| (index, check_module(&specs[index], default_storage, &tool)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Checked)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("a translation worker panicked"))
            .collect();
        all.sort_by_key(|(index, _)| *index);
        all.into_iter().map(|(_, c)| c).collect()
    });
    let mut failures: Vec<String> = checked.iter().flat_map(|c| c.failures.clone()).collect();
    if glslang {
        failures.extend(validate_glsl(
            checked.iter().flat_map(|c| c.glsl.iter()),
            scratch.path(),
            workers,
        ));
    }
    let kept_off: usize = checked.iter().map(|c| c.kept_off).sum();
    let inexpressible: usize = checked.iter().map(|c| c.inexpressible).sum();
    let translated: usize = checked.iter().map(|c| c.translated).sum();
    let storage_max = checked.iter().map(|c| c.storage_buffers).max().unwrap_or(0);
    let beyond_default_limits: HashSet<usize> = checked
        .iter()
        .enumerate()
        .filter(|(_, c)| c.beyond_default_storage)
        .map(|(index, _)| index)
        .collect();
    println!("translated in {:?}", t0.elapsed());
    let tint = write_tint_manifest(&specs, &beyond_default_limits);
    println!(
        "{} modules need more than WebGPU's default {default_storage} bytes of workgroup \
         memory and are left out of the Tint check",
        beyond_default_limits.len()
    );
    println!(
        "{} modules ({} for Dawn/Tint in {}); {translated} translations passed, spirv-val {}, \
         glslangValidator {}; {kept_off} (backend, module) pairs kept off for features the \
         backend lacks, {inexpressible} of them not expressible there anyway; at most \
         {storage_max} storage buffers in one module",
        specs.len(),
        tint,
        manifest_dir().display(),
        if spirv_val { "ran" } else { "not installed" },
        if glslang { "ran" } else { "not installed" },
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        storage_max <= rsp::gpu::MIN_STORAGE_BUFFERS,
        "a module binds {storage_max} storage buffers; MIN_STORAGE_BUFFERS says {}",
        rsp::gpu::MIN_STORAGE_BUFFERS
    );
    // Every skeleton, op and element type is among them.
    for (name, _, _) in SHADERS {
        for dtype in [DType::F32, DType::F16] {
            let typed = !rsp::gpu::shaders::typed_bindings(name).is_empty();
            assert!(
                specs
                    .iter()
                    .any(|s| s.shader.name == *name && (!typed || s.types.contains(&dtype))),
                "{name} {dtype:?} never built"
            );
        }
    }
}

/// The derivation of variant modules above matches what the engine really builds: with
/// a variant of each recording kind forced (one dispatch, packed operands, Winograd;
/// every single-dispatch variant derives its module the same way), every module built
/// is the fallback's or derived from one of the fallback's modules. In f16 only the
/// packed kind, whose pack passes carry the op's binding types, is forced again. The
/// smallest golden case's RSP and LRP-α1β0 run every GEMM op in every mode; the
/// derivation does not depend on a convolution's geometry.
#[test]
fn forced_variants_build_only_the_derived_modules() {
    let models: Vec<(Model, rsp::Tensor)> = ["vgg_tiny"]
        .iter()
        .map(|case| {
            let f = common::golden(case);
            (Model::from_tensors(&f).unwrap(), common::get(&f, "input"))
        })
        .collect();
    let run = |opts: ContextOptions| {
        let ctx = GpuContext::new(&opts).unwrap();
        for (model, input) in &models {
            let gm = GpuModel::upload(&ctx, model);
            for req in [
                Request::default(),
                Request::method(Method::LrpAlphaBeta, None),
            ] {
                explain(&ctx, &gm, input, &req).unwrap();
            }
        }
        ctx.built_modules()
    };
    let forced_kinds: [(Precision, &[&str]); 2] = [
        (
            Precision::F32,
            &["large-128x128-k16", "subgroup-32x32", "winograd-2x2"],
        ),
        (Precision::F16, &["subgroup-32x32"]),
    ];
    for (precision, kernels) in forced_kinds {
        let fallback = run(ContextOptions {
            precision,
            ..Default::default()
        });
        for kernel in kernels
            .iter()
            .map(|name| GemmKernel::parse(name).expect("a variant"))
        {
            let derived: Vec<ModuleSpec> = fallback
                .iter()
                .filter(|s| is_fallback(s))
                .flat_map(|s| variant_modules(kernel, s))
                .collect();
            let forced = run(ContextOptions {
                precision,
                gemm_kernel: Some(kernel.to_string()),
                ..Default::default()
            });
            let mut saw_variant = false;
            for spec in &forced {
                saw_variant |= spec.shader.skeleton == kernel.shader(spec.shader.name).skeleton
                    && !is_fallback(spec);
                assert!(
                    fallback.contains(spec) || derived.contains(spec),
                    "{kernel} ({precision:?}) built {} which the derivation misses",
                    spec.label()
                );
            }
            assert!(saw_variant, "{kernel} was never built");
        }
    }
}
