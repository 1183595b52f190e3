//! Compute pipelines, compiled once per (shader, override constants, binding layout).

use std::collections::HashMap;
use std::sync::Arc;

use super::dtype::DType;
use super::shaders::{self, Skeleton};

/// How a kernel uses one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// Which module a dispatch runs: an op file, the GEMM skeleton completing it, and
/// whether naga's runtime checks are compiled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShaderRef {
    pub name: &'static str,
    pub skeleton: Skeleton,
    /// Built with `create_shader_module_trusted` and no runtime checks (no index
    /// clamping, no guarded integer division, no loop bounding): only for kernels
    /// whose own guards keep every access in bounds (the GEMM skeletons).
    pub unchecked: bool,
}

impl ShaderRef {
    /// `name`, or `name[skeleton,unchecked]` for GEMM kernels (profiles, errors).
    pub fn label(&self) -> String {
        match self.skeleton {
            Skeleton::None => self.name.to_string(),
            s => format!(
                "{}[{}{}]",
                self.name,
                format!("{s:?}").to_lowercase(),
                if self.unchecked { ",unchecked" } else { "" }
            ),
        }
    }
}

impl From<&'static str> for ShaderRef {
    fn from(name: &'static str) -> Self {
        ShaderRef {
            name,
            skeleton: Skeleton::None,
            unchecked: false,
        }
    }
}

/// One WGSL module exactly as the engine builds it: the op file and its skeleton, the
/// element types of its typed bindings (in [`shaders::typed_bindings`] order) and the
/// override constants its pipeline is created with. The shader translation tests and
/// the Dawn/Tint check take these from [`GpuContext::built_modules`](super::GpuContext::built_modules).
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleSpec {
    pub shader: ShaderRef,
    pub types: Vec<DType>,
    pub constants: Vec<(&'static str, f64)>,
}

impl ModuleSpec {
    /// The composed WGSL source (aliases, geometry header, op file, skeleton).
    pub fn source(&self) -> String {
        shaders::source_typed(self.shader.name, &self.types, self.shader.skeleton)
            .unwrap_or_else(|| panic!("no shader {:?} in shaders/", self.shader))
    }

    /// The device features the module needs: `SHADER_F16` for any f16 binding (and the
    /// matrix units' f16 operands), `SUBGROUP` and cooperative matrices by skeleton. A
    /// backend whose adapters never offer one of them never builds the module (the
    /// context requests only what the adapter has, and the kernel variants that need
    /// more are not [`supported`](crate::ops::gemm::GemmKernel::supported) there).
    pub fn features(&self) -> wgpu::Features {
        let mut f = wgpu::Features::empty();
        let skeleton = self.shader.skeleton;
        if self.types.contains(&DType::F16) || skeleton.needs_f16() {
            f |= wgpu::Features::SHADER_F16;
        }
        if skeleton.needs_subgroups() {
            f |= wgpu::Features::SUBGROUP;
        }
        if skeleton.needs_cooperative_matrix() {
            f |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        f
    }

    /// `op[skeleton] f32,f16 NAME=value …`, for test failures and the Tint manifest.
    pub fn label(&self) -> String {
        let types: Vec<&str> = self.types.iter().map(|t| t.wgsl()).collect();
        let constants: Vec<String> = self
            .constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{} [{}] {}",
            self.shader.label(),
            types.join(","),
            constants.join(" ")
        )
        .trim_end()
        .to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: ShaderRef,
    constants: Vec<(&'static str, u64)>,
    storage: Vec<Access>,
    /// Storage bindings after the uniform block (n + 1 ..).
    extra: Vec<Access>,
    /// Element types of the shader's typed bindings (empty for untyped shaders).
    types: Vec<DType>,
}

pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

pub(crate) struct PipelineCache {
    modules: HashMap<(ShaderRef, Vec<DType>), wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, Arc<Pipeline>>,
    /// Build every module with runtime checks, `unchecked` variants included
    /// (`$RSP_CHECKED_SHADERS`, so the test suite can run once that way).
    all_checked: bool,
    /// Every distinct (module, constants) a pipeline was created for, in order.
    built: Vec<ModuleSpec>,
}

impl PipelineCache {
    pub fn new(all_checked: bool) -> Self {
        PipelineCache {
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            all_checked,
            built: Vec::new(),
        }
    }

    /// Every module a pipeline was created for so far.
    pub fn built(&self) -> &[ModuleSpec] {
        &self.built
    }

    /// The pipeline of `shader` specialised by `constants`, whose bind group 0 holds the
    /// given storage bindings (0..n, with element types `types`), one uniform parameter
    /// block (n) and the `extra` storage bindings (n + 1 ..; f32).
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        shader: ShaderRef,
        constants: &[(&'static str, f64)],
        storage: &[Access],
        types: &[DType],
        extra: &[Access],
    ) -> Arc<Pipeline> {
        // Only the typed bindings' element types change the module.
        let typed: Vec<DType> = shaders::typed_bindings(shader.name)
            .iter()
            .map(|(_, i)| types.get(*i).copied().unwrap_or_default())
            .collect();
        let key = PipelineKey {
            shader,
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
            storage: storage.to_vec(),
            extra: extra.to_vec(),
            types: typed.clone(),
        };
        if let Some(p) = self.pipelines.get(&key) {
            return p.clone();
        }
        let spec = ModuleSpec {
            shader,
            types: typed.clone(),
            constants: constants.to_vec(),
        };
        if !self.built.contains(&spec) {
            self.built.push(spec);
        }
        let all_checked = self.all_checked;
        let module = self
            .modules
            .entry((shader, typed.clone()))
            .or_insert_with(|| {
                let src = shaders::source_typed(shader.name, &typed, shader.skeleton)
                    .unwrap_or_else(|| panic!("no shader {shader:?} in shaders/"));
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                };
                if shader.unchecked && !all_checked {
                    // SAFETY: only GEMM skeletons are built unchecked; each guards its
                    // loads and stores by the problem's M, N and K, derives workgroup
                    // array indices from constant tile sizes, divides only by override
                    // constants or sizes the host checked to be non-zero, and every
                    // loop runs to a bound fixed before it starts.
                    unsafe {
                        device.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks::unchecked(),
                        )
                    }
                } else {
                    device.create_shader_module(desc)
                }
            });
        let uniform = storage.len();
        let mut entries: Vec<wgpu::BindGroupLayoutEntry> = storage
            .iter()
            .enumerate()
            .chain(extra.iter().enumerate().map(|(i, a)| (uniform + 1 + i, a)))
            .map(|(i, a)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *a == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: uniform as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(shader.name),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(shader.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader.name),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel initialises the workgroup memory it reads.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines.insert(key, p.clone());
        p
    }
}
