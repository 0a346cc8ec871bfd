//! Determinism of the field model: it is the ground truth of every integrity check.

use po_protocol::{TagId, Value};
use po_simulator::field::{FieldModel, SiteSpec};
use proptest::prelude::*;
use std::time::Duration;

fn spec() -> impl Strategy<Value = SiteSpec> {
    (1u32..20, 1u32..70, 1u64..2000).prop_map(|(devices, tags_per_device, ms)| SiteSpec {
        devices,
        tags_per_device,
        scan_period: Duration::from_millis(ms),
    })
}

fn bits(v: Value) -> (u8, u64) {
    match v {
        Value::Analog(x) => (0, x.to_bits()),
        Value::Digital(b) => (1, u64::from(b)),
        Value::Counter(c) => (2, c),
    }
}

proptest! {
    #[test]
    fn same_seed_and_tick_give_the_same_value_across_models(
        seed in any::<u64>(), spec in spec(), tick in any::<u64>(), tag in any::<prop::sample::Index>()
    ) {
        let a = FieldModel::new(seed, spec.clone()).unwrap();
        let b = FieldModel::new(seed, spec).unwrap();
        let tag = TagId(tag.index(a.tag_count()) as u32);
        prop_assert_eq!(a.catalog(), b.catalog());
        let va = a.value(tag, tick).unwrap();
        prop_assert_eq!(bits(va), bits(b.value(tag, tick).unwrap()));
        // The bulk path agrees with the per-tag path.
        let mut all = Vec::new();
        a.values_at(tick, &mut all);
        prop_assert_eq!(bits(all[tag.index()]), bits(va));
    }

    #[test]
    fn different_seeds_give_different_sites(seed in any::<u64>(), tick in 0u64..1u64 << 40) {
        let spec = SiteSpec { devices: 2, tags_per_device: 16, scan_period: Duration::from_millis(100) };
        let a = FieldModel::new(seed, spec.clone()).unwrap();
        let b = FieldModel::new(seed.wrapping_add(1), spec).unwrap();
        let (mut va, mut vb) = (Vec::new(), Vec::new());
        a.values_at(tick, &mut va);
        b.values_at(tick, &mut vb);
        prop_assert_ne!(va.iter().map(|v| bits(*v)).collect::<Vec<_>>(), vb.iter().map(|v| bits(*v)).collect::<Vec<_>>());
    }

    #[test]
    fn tick_and_tick_time_agree(spec in spec(), now in 0u64..1u64 << 53) {
        let m = FieldModel::new(1, spec).unwrap();
        let tick = m.tick_at(po_protocol::Timestamp(now));
        prop_assert!(m.tick_time(tick).0 <= now);
        prop_assert!(m.tick_time(tick + 1).0 > now);
    }
}
