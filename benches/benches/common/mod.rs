//! The site every connector bench uses: 10 000 tags (200 meters × 50) every 100 ms.

use po_protocol::{Quality, TagValue, Timestamp};
use po_simulator::{FieldModel, SiteSpec};
use smart_connector::config::{MapConfig, ModbusConfig};
use smart_connector::map::RegisterMap;
use std::sync::Arc;
use std::time::Duration;

pub fn site() -> SiteSpec {
    SiteSpec {
        devices: 200,
        tags_per_device: 50,
        scan_period: Duration::from_millis(100),
    }
}

/// The model, the connector's automatic register map of it, and one tick of values.
pub fn one_tick() -> (FieldModel, Arc<RegisterMap>, Vec<TagValue>) {
    let model = FieldModel::new(7, site()).unwrap();
    let map = Arc::new(
        RegisterMap::build(
            model.catalog(),
            &ModbusConfig::default(),
            &MapConfig::default(),
        )
        .unwrap(),
    );
    let mut values = Vec::new();
    model.values_at(1000, &mut values);
    let batch = values
        .iter()
        .enumerate()
        .map(|(i, v)| TagValue {
            tag: model.catalog()[i].id,
            value: *v,
            quality: Quality::Good,
            sampled_at: Timestamp(1_790_000_000_000_000),
        })
        .collect();
    (model, map, batch)
}
