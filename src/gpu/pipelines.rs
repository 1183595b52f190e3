//! Compute pipelines, compiled once per (shader, override constants, binding layout).

use std::collections::HashMap;
use std::sync::Arc;

use super::shaders;
use super::tensor::DType;

/// How a kernel uses one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    constants: Vec<(&'static str, u64)>,
    storage: Vec<Access>,
    /// Element types of the shader's typed bindings (empty for untyped shaders).
    types: Vec<DType>,
}

pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: HashMap<(&'static str, Vec<DType>), wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, Arc<Pipeline>>,
}

impl PipelineCache {
    /// The pipeline of `shader` specialised by `constants`, whose bind group 0 holds the
    /// given storage bindings (0..n, with element types `types`) followed by one
    /// uniform parameter block (n).
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        shader: &'static str,
        constants: &[(&'static str, f64)],
        storage: &[Access],
        types: &[DType],
    ) -> Arc<Pipeline> {
        // Only the typed bindings' element types change the module.
        let typed: Vec<DType> = shaders::typed_bindings(shader)
            .iter()
            .map(|(_, i)| types.get(*i).copied().unwrap_or_default())
            .collect();
        let key = PipelineKey {
            shader,
            constants: constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
            storage: storage.to_vec(),
            types: typed.clone(),
        };
        if let Some(p) = self.pipelines.get(&key) {
            return p.clone();
        }
        let module = self
            .modules
            .entry((shader, typed.clone()))
            .or_insert_with(|| {
                let src = shaders::source_typed(shader, &typed)
                    .unwrap_or_else(|| panic!("no shader named '{shader}' in shaders/"));
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                })
            });
        let mut entries: Vec<wgpu::BindGroupLayoutEntry> = storage
            .iter()
            .enumerate()
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
            binding: storage.len() as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(shader),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(shader),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader),
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
