//! Choosing the adapter (`ContextOptions::adapter`, the CLI's `--adapter`) on the
//! machine's real adapters: by index and by name the chosen one opens; a choice that
//! matches nothing is refused naming the option and listing every adapter.

use rsp::error::{kind, ErrorKind};
use rsp::gpu::{list_adapters, AdapterChoice, Backend, ContextOptions, GpuContext};

fn open(choice: &str) -> anyhow::Result<GpuContext> {
    GpuContext::new(&ContextOptions {
        backend: Backend::Vulkan,
        adapter: Some(choice.parse().unwrap()),
        ..Default::default()
    })
}

#[test]
fn the_chosen_adapter_opens_and_a_missing_one_is_refused() {
    let all = list_adapters(Backend::Vulkan);
    assert!(!all.is_empty(), "no Vulkan adapter");
    for a in &all {
        let ctx = open(&format!("index:{}", a.index)).unwrap();
        assert_eq!((ctx.adapter.index, &ctx.adapter.name), (a.index, &a.name));
        let by_name = open(&format!("name:{}", a.name.to_uppercase())).unwrap();
        assert_eq!(by_name.adapter.name, a.name);
        if !a.pci_bus_id.is_empty() {
            let by_bus = open(&format!("pci:{}", a.pci_bus_id)).unwrap();
            assert_eq!(by_bus.adapter.index, a.index);
        }
    }
    for missing in [
        format!("index:{}", all.len()),
        "pci:00ff:ff:1f.7".into(),
        "name:no such gpu".into(),
    ] {
        let e = open(&missing)
            .err()
            .expect("a choice that matches nothing opened");
        assert_eq!(kind(&e), ErrorKind::InvalidInput);
        let text = format!("{e:#}");
        assert!(
            text.starts_with(&format!("--adapter {missing} matches none")),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
        for a in &all {
            assert!(
                text.contains(&format!("index:{} '{}'", a.index, a.name)),
                "{text}"
            );
        }
    }
    let choice: AdapterChoice = "index:0".parse().unwrap();
    assert_eq!(choice.to_string(), "index:0");
}
