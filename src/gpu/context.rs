//! Adapter selection and the device every dispatch runs on.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};

use super::dtype::{DType, Precision};
use super::pipelines::PipelineCache;
use super::pool::BufferPool;
use super::profiler::{PassClock, Profiler};
use super::tune::{self, Autotune, Tuner};
use crate::error::Param;

/// Which wgpu backends to consider (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl Backend {
    /// Backends to try. `Auto` means the native APIs (Vulkan, Metal, DX12); OpenGL is
    /// only consulted when none of them has an adapter (see [`GpuContext::new`]).
    pub fn backends(self) -> wgpu::Backends {
        match self {
            Backend::Auto => wgpu::Backends::PRIMARY,
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "vulkan" | "vk" => Ok(Backend::Vulkan),
            "metal" => Ok(Backend::Metal),
            "dx12" | "d3d12" => Ok(Backend::Dx12),
            "gl" | "gles" | "opengl" => Ok(Backend::Gl),
            other => Err(format!(
                "unknown backend '{other}' (expected auto, vulkan, metal, dx12 or gl)"
            )),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Backend::Auto => "auto",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::Dx12 => "dx12",
            Backend::Gl => "gl",
        };
        f.write_str(s)
    }
}

/// Which adapter a context opens (`--adapter`, Python's `adapter=`, `RSP_ADAPTER`); by
/// default the best by type (discrete, integrated, virtual, other, CPU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdapterChoice {
    /// The adapter at this index of `rsp adapters` (wgpu's enumeration order for the
    /// backend).
    Index(usize),
    /// The adapter on this PCI bus: `domain:bus:device.function` in hex, as wgpu
    /// reports it (`0000:3b:00.0`) or NVML does (`00000000:3B:00.0`); the domain may be
    /// left out (`3b:00.0`).
    Pci(PciAddress),
    /// The first adapter (by index) whose name contains this, ignoring case.
    Name(String),
}

/// A PCI address, compared by value (the same bus written by wgpu and by NVML).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is no PCI address (domain:bus:device.function in hex)");
        let (rest, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, v] => (*d, *b, *v),
            [b, v] => ("0", *b, *v),
            _ => return Err(bad()),
        };
        Ok(PciAddress {
            domain: u32::from_str_radix(domain, 16).map_err(|_| bad())?,
            bus: u8::from_str_radix(bus, 16).map_err(|_| bad())?,
            device: u8::from_str_radix(device, 16).map_err(|_| bad())?,
            function: u8::from_str_radix(function, 16).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for AdapterChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let expected = "expected index:N, pci:BUS or name:SUBSTRING";
        match s.split_once(':') {
            Some(("index", n)) => n
                .parse()
                .map(AdapterChoice::Index)
                .map_err(|_| format!("'{s}': '{n}' is no index ({expected})")),
            Some(("pci", bus)) => bus
                .parse()
                .map(AdapterChoice::Pci)
                .map_err(|e| format!("'{s}': {e}")),
            Some(("name", name)) if !name.is_empty() => Ok(AdapterChoice::Name(name.into())),
            _ => Err(format!("'{s}': {expected}")),
        }
    }
}

impl fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterChoice::Index(i) => write!(f, "index:{i}"),
            AdapterChoice::Pci(a) => write!(f, "pci:{a}"),
            AdapterChoice::Name(n) => write!(f, "name:{n}"),
        }
    }
}

impl AdapterChoice {
    /// The index in `adapters` (enumeration order) of the adapter this choice names.
    pub fn find(&self, adapters: &[AdapterSummary]) -> Option<usize> {
        match self {
            AdapterChoice::Index(i) => (*i < adapters.len()).then_some(*i),
            AdapterChoice::Pci(want) => adapters
                .iter()
                .position(|a| a.pci_bus_id.parse::<PciAddress>().ok() == Some(*want)),
            AdapterChoice::Name(part) => {
                let part = part.to_lowercase();
                adapters
                    .iter()
                    .position(|a| a.name.to_lowercase().contains(&part))
            }
        }
    }
}

/// The limits a device is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceLimits {
    /// Everything the adapter offers (the default).
    #[default]
    Adapter,
    /// WebGPU's defaults (`wgpu::Limits::default()`: 256 invocations and 16 KiB of
    /// workgroup memory per workgroup, 128 MiB bindings, 256 MiB buffers, 8 storage
    /// buffers per stage), what any WebGPU implementation guarantees: the tests open
    /// lavapipe this way to show that rsp does not rely on its larger limits.
    WebGpuDefault,
    /// `wgpu::Limits::downlevel_defaults()` (GLES 3.1-class devices: 4 storage buffers
    /// per stage). rsp's convolution kernels bind more ([`MIN_STORAGE_BUFFERS`]), so
    /// opening a context this way fails with a clear error.
    Downlevel,
}

/// Storage buffers one kernel binds at most: a convolution op's five (input, weights,
/// bias or relevance, bounds, output) and the subgroup GEMM's two packed operands
/// (the translation test checks every built module against it).
pub const MIN_STORAGE_BUFFERS: u32 = 7;

/// Options for opening a [`GpuContext`].
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    pub backend: Backend,
    /// The adapter to open (`None`: the best by type).
    pub adapter: Option<AdapterChoice>,
    /// Cap on the bytes one storage binding may span, below the adapter's own
    /// `max_storage_buffer_binding_size`. Tests use it to exercise tensor splitting
    /// on tiny models.
    pub max_binding_override: Option<u64>,
    /// Time every dispatch with GPU timestamps (if the adapter supports them).
    pub profile: bool,
    /// Storage type of convolution and linear weights: f32 (default; the golden
    /// parity mode) or f16 (half the weight memory and bandwidth, f32 arithmetic;
    /// needs the adapter's `SHADER_F16`).
    pub weights: DType,
    /// `--precision`: [`Precision::F16`] also stores weights, activations and
    /// relevance sections in f16 and lets GEMMs round their operands to f16 on matrix
    /// units.
    pub precision: Precision,
    /// Never offer the cooperative-matrix (tensor core) GEMM variants, even where the
    /// adapter has them.
    pub disable_matrix_units: bool,
    /// Offer the autotuner only the variants that reproduce the fallback's results bit
    /// for bit (no Winograd, no matrix units).
    pub exact_kernels: bool,
    /// Whether GEMM kernel variants are chosen by measurement (off by default in the
    /// library; the CLI turns it on).
    pub autotune: Autotune,
    /// Where the autotuner keeps its choices (`None`: [`tune::default_cache_path`]).
    pub autotune_cache: Option<std::path::PathBuf>,
    /// The most time this context's autotuner spends measuring (`None`: unbounded);
    /// problems it cannot afford run the fallback and are measured by later runs.
    pub autotune_budget: Option<std::time::Duration>,
    /// Run this GEMM kernel variant everywhere it applies, by name (`rsp bench
    /// --kernel`; the tests run every kernel with every tile shape); it wins over
    /// autotuning.
    pub gemm_kernel: Option<String>,
    /// Show a spinner on a terminal while autotuning runs longer than a second.
    pub progress: bool,
    /// Test hook: also offer the autotuner a GEMM variant that is fast and wrong, to
    /// show that its correctness check rejects it.
    #[doc(hidden)]
    pub offer_broken_variant: bool,
    /// Build every kernel with naga's runtime checks, the unchecked variants included
    /// (also switched on by the environment variable `RSP_CHECKED_SHADERS=1`).
    pub checked_shaders: bool,
    /// The limits the device is opened with; kernel variants that need more are not
    /// offered.
    pub limits: DeviceLimits,
}

/// One line of `rsp adapters`.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Its index in wgpu's enumeration for the backend it was listed for
    /// ([`AdapterChoice::Index`]).
    pub index: usize,
    pub name: String,
    /// `domain:bus:device.function` where the driver reports it, else empty.
    pub pci_bus_id: String,
    pub vendor: u32,
    pub device: u32,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations: u32,
    pub shader_f16: bool,
    /// The subgroup size when the adapter has `Features::SUBGROUP` and runs every
    /// subgroup at one fixed size (lavapipe: 8), else `None`.
    pub fixed_subgroup: Option<u32>,
    /// `Features::EXPERIMENTAL_COOPERATIVE_MATRIX` with a 16×16×16 configuration of
    /// f16 inputs and f32 accumulators (the form `gemm_coop.wgsl` uses).
    pub matrix_f16_f32: bool,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete",
            wgpu::DeviceType::IntegratedGpu => "integrated",
            wgpu::DeviceType::VirtualGpu => "virtual",
            wgpu::DeviceType::Cpu => "cpu",
            wgpu::DeviceType::Other => "other",
        };
        write!(
            f,
            "{} [{:?}, {kind}] driver '{}': max storage binding {} MiB, max buffer {} MiB, \
             workgroup storage {} KiB, {} invocations/workgroup, shader-f16 {}, \
             fixed subgroup size {}, matrix units 16x16x16 f16->f32 {}",
            self.name,
            self.backend,
            self.driver,
            self.max_storage_binding >> 20,
            self.max_buffer >> 20,
            self.max_workgroup_storage >> 10,
            self.max_invocations,
            if self.shader_f16 { "yes" } else { "no" },
            self.fixed_subgroup
                .map_or("no".to_string(), |n| n.to_string()),
            if self.matrix_f16_f32 { "yes" } else { "no" }
        )
    }
}

fn summarize(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        index,
        pci_bus_id: info.device_pci_bus_id,
        name: info.name,
        vendor: info.vendor,
        device: info.device,
        backend: info.backend,
        device_type: info.device_type,
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        max_invocations: limits.max_compute_invocations_per_workgroup,
        shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
        fixed_subgroup: (adapter.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == info.subgroup_max_size)
            .then_some(info.subgroup_max_size),
        matrix_f16_f32: adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && adapter.cooperative_matrix_properties().iter().any(|p| {
                use wgpu::CooperativeScalarType as T;
                (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                    && p.ab_type == T::F16
                    && p.cr_type == T::F32
                    && !p.saturating_accumulation
            }),
    }
}

/// Turns Mesa's Vulkan device-select layer off (`NODEVICE_SELECT=1`) for this process
/// when it could not reach a Wayland compositor anyway and nobody asked for its
/// choice. Mesa up to 22.3 (Debian bookworm's own) asks the compositor which GPU is
/// the default whenever an instance enables `VK_KHR_wayland_surface`, as wgpu's does,
/// and libwayland then prints `error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment.` twice on every run without a desktop session; later Mesa asks only
/// when `WAYLAND_DISPLAY` is set. rsp picks its adapter itself (see
/// [`GpuContext::new`]), so the layer's ordering is not needed; `MESA_VK_DEVICE_SELECT`
/// or `DRI_PRIME`, when set, keep the layer on.
fn quiet_device_select_layer() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        // libwayland connects through WAYLAND_SOCKET, an absolute WAYLAND_DISPLAY, or
        // a socket under an absolute XDG_RUNTIME_DIR; without any of them it prints.
        let absolute = |name: &str| {
            std::env::var_os(name).is_some_and(|v| std::path::Path::new(&v).is_absolute())
        };
        let wayland_reachable =
            set("WAYLAND_SOCKET") || absolute("WAYLAND_DISPLAY") || absolute("XDG_RUNTIME_DIR");
        let already_chosen =
            set("NODEVICE_SELECT") || set("MESA_VK_DEVICE_SELECT") || set("DRI_PRIME");
        if !wayland_reachable && !already_chosen {
            // Before any instance exists, so no Vulkan loader reads the environment
            // at the same time.
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
}

fn instance(backend: Backend) -> wgpu::Instance {
    quiet_device_select_layer();
    wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backend.backends(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    })
}

/// Every adapter wgpu finds for `backend`.
pub fn list_adapters(backend: Backend) -> Vec<AdapterSummary> {
    let inst = instance(backend);
    pollster::block_on(inst.enumerate_adapters(backend.backends()))
        .iter()
        .enumerate()
        .map(|(i, a)| summarize(i, a))
        .collect()
}

/// The device, its queue, the pipeline cache and the buffer pool.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    /// Largest byte span one storage binding may cover (adapter limit or the override).
    pub max_binding: u64,
    pub(crate) pipelines: Mutex<PipelineCache>,
    pub(crate) pool: BufferPool,
    /// Bound where a kernel's mode leaves a binding unread.
    pub(crate) placeholder: wgpu::Buffer,
    /// Per-kernel GPU timing, when asked for and supported.
    pub profiler: Option<Profiler>,
    /// The autotuner's timestamps, where the device has them and tuning is on.
    pub(crate) clock: Option<PassClock>,
    /// Storage type of uploaded layer weights (`ContextOptions::weights`, or f16 for
    /// [`Precision::F16`]).
    pub weight_dtype: DType,
    /// `ContextOptions::precision`.
    pub precision: Precision,
    /// Whether the cooperative-matrix GEMM variants may be offered: the adapter has
    /// 16×16×16 f16 → f32 matrices and 32-lane subgroups, and they were not disabled.
    pub matrix_units: bool,
    /// Workgroups a GEMM should offer to keep this adapter busy: below it, 64×64 tiles
    /// give way to 32×32 ones (the GEMM op family's tile choice). 256 for GPUs (two
    /// per streaming multiprocessor on a 132-SM card); two per thread for a CPU device
    /// such as lavapipe, where every workgroup runs on a thread anyway and smaller
    /// tiles only lose reuse.
    pub fill_workgroups: usize,
    /// `ContextOptions::gemm_kernel`.
    pub gemm_kernel: Option<String>,
    /// `ContextOptions::exact_kernels`.
    pub exact_kernels: bool,
    /// Chooses kernel variants by measurement (`ContextOptions::autotune`).
    pub tuner: Tuner,
    /// `ContextOptions::offer_broken_variant`.
    #[doc(hidden)]
    pub offer_broken_variant: bool,
    /// Held by the one [`Recorder`](super::recorder::Recorder) recording at a time:
    /// buffers freed while recording are reused only by later commands of the same
    /// recording.
    pub(crate) recording: Mutex<()>,
}

impl GpuContext {
    /// Storage type of activations and relevance sections: f16 under
    /// [`Precision::F16`], else f32. Quotients, statistics, logits, scores and final
    /// maps stay f32 either way.
    pub fn activation_dtype(&self) -> DType {
        match self.precision {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }

    /// Every module (op file, skeleton, binding types, override constants) this context
    /// has created a pipeline for, in the order they were first built.
    pub fn built_modules(&self) -> Vec<super::pipelines::ModuleSpec> {
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .built()
            .to_vec()
    }

    /// The adapter part of autotuning keys: vendor, device, driver and backend.
    pub fn adapter_key(&self) -> String {
        let a = &self.adapter;
        format!(
            "{:04x}:{:04x} {:?} {} ({})",
            a.vendor, a.device, a.backend, a.driver, a.name
        )
    }

    /// Opens the best adapter of the chosen backend (discrete > integrated > other >
    /// cpu), requesting the adapter's real limits rather than wgpu's defaults.
    pub fn new(opts: &ContextOptions) -> Result<Self> {
        // Every failure here is the device's (a wrong flag value fails in its parser).
        Self::open(opts).map_err(|e| match crate::error::kind(&e) {
            crate::error::ErrorKind::Other => crate::error::device(format!("{e:#}")),
            _ => e,
        })
    }

    fn open(opts: &ContextOptions) -> Result<Self> {
        let mut inst = instance(opts.backend);
        let mut adapters = pollster::block_on(inst.enumerate_adapters(opts.backend.backends()));
        if adapters.is_empty() && opts.backend == Backend::Auto {
            inst = instance(Backend::Gl);
            adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::GL));
        }
        if adapters.is_empty() {
            let mut found = list_adapters(Backend::Auto);
            found.extend(list_adapters(Backend::Gl));
            let all: Vec<String> = found.iter().map(|a| format!("  {a}")).collect();
            bail!(
                "no GPU adapter found for backend '{}'. Available adapters:\n{}",
                opts.backend,
                if all.is_empty() {
                    "  (none: install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers libvulkan1` for the lavapipe CPU device)".to_string()
                } else {
                    all.join("\n")
                }
            );
        }
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let (index, adapter) = match &opts.adapter {
            Some(choice) => {
                let found: Vec<AdapterSummary> = adapters
                    .iter()
                    .enumerate()
                    .map(|(i, a)| summarize(i, a))
                    .collect();
                let Some(i) = choice.find(&found) else {
                    let listed: Vec<String> = found
                        .iter()
                        .map(|a| {
                            let bus = if a.pci_bus_id.is_empty() {
                                "no PCI bus"
                            } else {
                                &a.pci_bus_id
                            };
                            format!("index:{} '{}' ({bus})", a.index, a.name)
                        })
                        .collect();
                    return Err(crate::error::bad_option(
                        Param::Adapter,
                        format!(
                            "{choice} matches none of the {} adapters of backend '{}': {}",
                            found.len(),
                            opts.backend,
                            listed.join(", ")
                        ),
                    ));
                };
                (i, adapters.swap_remove(i))
            }
            None => {
                let best = (0..adapters.len())
                    .min_by_key(|&i| (rank(&adapters[i]), i))
                    .expect("adapters is not empty");
                (best, adapters.swap_remove(best))
            }
        };
        let limits = match opts.limits {
            DeviceLimits::Adapter => adapter.limits(),
            DeviceLimits::WebGpuDefault => wgpu::Limits::default(),
            DeviceLimits::Downlevel => wgpu::Limits::downlevel_defaults(),
        };
        let mut beyond = Vec::new();
        limits.check_limits_with_fail_fn(&adapter.limits(), false, |name, want, has| {
            beyond.push(format!("{name} {want} > {has}"))
        });
        if !beyond.is_empty() {
            bail!(
                "'{}' does not offer the requested limits ({:?}): {}",
                adapter.get_info().name,
                opts.limits,
                beyond.join(", ")
            );
        }
        if limits.max_storage_buffers_per_shader_stage < MIN_STORAGE_BUFFERS {
            bail!(
                "'{}' allows {} storage buffers per shader stage{}; rsp's kernels bind up to {MIN_STORAGE_BUFFERS}",
                adapter.get_info().name,
                limits.max_storage_buffers_per_shader_stage,
                if opts.limits == DeviceLimits::Adapter { "" } else { " with the requested limits" }
            );
        }
        let has_timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let timestamps = opts.profile && has_timestamps;
        // The autotuner times its candidates on the device's clock where it can.
        let clock = has_timestamps && opts.autotune != Autotune::Off;
        if opts.profile && !timestamps {
            eprintln!(
                "warning: '{}' has no timestamp queries; profiling is off",
                adapter.get_info().name
            );
        }
        let half = opts.weights == DType::F16 || opts.precision == Precision::F16;
        if half && !adapter.features().contains(wgpu::Features::SHADER_F16) {
            let param = if opts.precision == Precision::F16 {
                Param::Precision
            } else {
                Param::WeightsDtype
            };
            return Err(crate::error::bad_option(
                param,
                format!(
                    "f16: '{}' does not support f16 in shaders (SHADER_F16); use f32",
                    adapter.get_info().name
                ),
            ));
        }
        let summary = summarize(index, &adapter);
        let matrix_units = !opts.disable_matrix_units
            && !opts.exact_kernels
            && summary.matrix_f16_f32
            && summary.fixed_subgroup == Some(32)
            && adapter.features().contains(wgpu::Features::SHADER_F16);
        let mut features = wgpu::Features::empty();
        if timestamps || clock {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if half || matrix_units {
            features |= wgpu::Features::SHADER_F16;
        }
        // Only the subgroup and cooperative-matrix GEMM variants use it, and only where
        // the size is fixed.
        if summary.fixed_subgroup.is_some() {
            features |= wgpu::Features::SUBGROUP;
        }
        let mut experimental = wgpu::ExperimentalFeatures::disabled();
        if matrix_units {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: the experimental feature is used only by gemm_coop.wgsl, whose
            // variants are offered to the autotuner, which runs each on this device
            // against the f32 fallback before choosing it (`ops::gemm`);
            // `disable_matrix_units` keeps the feature off altogether.
            experimental = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rsp"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("cannot open device on '{}': {e}", adapter.get_info().name))?;
        let mut max_binding = limits.max_storage_buffer_binding_size;
        if let Some(cap) = opts.max_binding_override {
            max_binding = max_binding.min(cap);
        }
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("rsp placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let profiler = timestamps.then(|| Profiler::new(&device, &queue));
        let clock = clock.then(|| PassClock::new(&device, &queue));
        let fill_workgroups = if adapter.get_info().device_type == wgpu::DeviceType::Cpu {
            2 * std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            256
        };
        let tuner = Tuner::new(
            opts.autotune,
            opts.autotune_cache
                .clone()
                .or_else(tune::default_cache_path),
            opts.progress,
        )
        .with_budget(opts.autotune_budget);
        Ok(GpuContext {
            tuner,
            gemm_kernel: opts.gemm_kernel.clone(),
            exact_kernels: opts.exact_kernels,
            offer_broken_variant: opts.offer_broken_variant,
            profiler,
            clock,
            weight_dtype: if half { DType::F16 } else { DType::F32 },
            precision: opts.precision,
            matrix_units,
            fill_workgroups,
            placeholder,
            recording: Mutex::new(()),
            device,
            queue,
            adapter: summary,
            limits,
            max_binding,
            pipelines: Mutex::new(PipelineCache::new(
                opts.checked_shaders
                    || std::env::var_os("RSP_CHECKED_SHADERS")
                        .is_some_and(|v| !v.is_empty() && v != "0"),
            )),
            pool: BufferPool::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(index: usize, name: &str, bus: &str) -> AdapterSummary {
        AdapterSummary {
            index,
            name: name.into(),
            pci_bus_id: bus.into(),
            vendor: 0,
            device: 0,
            backend: wgpu::Backend::Vulkan,
            device_type: wgpu::DeviceType::DiscreteGpu,
            driver: String::new(),
            max_storage_binding: 0,
            max_buffer: 0,
            max_workgroup_storage: 0,
            max_invocations: 0,
            shader_f16: false,
            fixed_subgroup: None,
            matrix_f16_f32: false,
        }
    }

    #[test]
    fn an_adapter_choice_parses_and_finds_its_adapter() {
        let two = [
            adapter(0, "NVIDIA H100 80GB HBM3", "0000:1b:00.0"),
            adapter(1, "NVIDIA H100 80GB HBM3", "0000:3b:00.0"),
            adapter(2, "llvmpipe (LLVM 15.0.6, 256 bits)", ""),
        ];
        let find = |s: &str| s.parse::<AdapterChoice>().unwrap().find(&two);
        assert_eq!(find("index:1"), Some(1));
        assert_eq!(find("index:3"), None);
        // wgpu's spelling and NVML's (8-digit domain, upper case) name the same bus.
        assert_eq!(find("pci:0000:3b:00.0"), Some(1));
        assert_eq!(find("pci:00000000:3B:00.0"), Some(1));
        assert_eq!(find("pci:1b:00.0"), Some(0));
        assert_eq!(find("pci:0000:5e:00.0"), None);
        assert_eq!(find("name:LLVMpipe"), Some(2));
        assert_eq!(find("name:h100"), Some(0), "the first by index");
        for bad in ["3", "index:x", "pci:3b", "pci:zz:00.0", "name:", "gpu:1"] {
            let e = bad.parse::<AdapterChoice>().unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let pci: PciAddress = "00000000:3B:00.0".parse().unwrap();
        assert_eq!(pci.to_string(), "0000:3b:00.0");
    }
}
