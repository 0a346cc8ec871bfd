//! The connector's side of the OPC UA bench on "the same load" as node-opcua's: every
//! monitored item changing every second. po-sim's sites hold tags that keep their value
//! from one scan to the next (breaker states, setpoints; 18 % of a 50-tag meter), which a
//! server rightly does not notify; monitoring only the tags that change on every scan
//! makes the connector's offered notifications equal node-opcua's (all of its variables
//! are written each second). Pure: the field model is a function of seed, tag and tick.

use po_simulator::{FieldModel, SiteSpec};
use std::time::Duration;

/// Ticks sampled to tell a tag that changes on every scan.
const SAMPLED_TICKS: std::ops::Range<u64> = 1000..1030;

/// A site big enough for the wanted number of changing tags.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangingSite {
    pub devices: u32,
    /// The tags that changed on every sampled scan, in catalogue order.
    pub names: Vec<String>,
}

/// The smallest site of `tags_per_device`-tag meters (seed `seed`) with at least `wanted`
/// tags changing on every sampled scan. `None` when even the largest site po-sim builds
/// has too few.
pub fn changing_site(
    seed: u64,
    tags_per_device: u32,
    scan: Duration,
    wanted: usize,
) -> Option<ChangingSite> {
    // Every meter has the same slots, so one meter tells how many change per meter;
    // grow from that estimate in case meters differ.
    let per_device = changing(seed, 1, tags_per_device, scan)?.names.len().max(1);
    let mut devices = wanted.div_ceil(per_device).max(1) as u32;
    loop {
        let site = changing(seed, devices, tags_per_device, scan)?;
        if site.names.len() >= wanted {
            return Some(site);
        }
        devices += 1;
    }
}

fn changing(seed: u64, devices: u32, tags_per_device: u32, scan: Duration) -> Option<ChangingSite> {
    let model = FieldModel::new(
        seed,
        SiteSpec {
            devices,
            tags_per_device,
            scan_period: scan,
        },
    )
    .ok()?;
    let n = model.tag_count();
    let mut always = vec![true; n];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for t in SAMPLED_TICKS {
        model.values_at(t, &mut a);
        model.values_at(t + 1, &mut b);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            always[i] &= x != y;
        }
    }
    let names: Vec<String> = model
        .catalog()
        .iter()
        .zip(&always)
        .filter(|(_, changes)| **changes)
        .map(|(tag, _)| tag.name.clone())
        .collect();
    Some(ChangingSite { devices, names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_has_enough_tags_that_change_on_every_scan_and_no_others() {
        let scan = Duration::from_secs(1);
        let site = changing_site(7, 50, scan, 1000).unwrap();
        assert!(site.names.len() >= 1000, "{}", site.names.len());
        // Fewer meters would not do.
        let smaller = changing(7, site.devices - 1, 50, scan).unwrap();
        assert!(smaller.names.len() < 1000);
        // Every listed tag changes on a scan outside the sampled ones too, and some tag
        // of the site is left out (breakers and setpoints keep their value).
        let model = FieldModel::new(
            7,
            SiteSpec {
                devices: site.devices,
                tags_per_device: 50,
                scan_period: scan,
            },
        )
        .unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        model.values_at(5000, &mut a);
        model.values_at(5001, &mut b);
        let by_name: std::collections::HashMap<&str, usize> = model
            .catalog()
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let unchanged = site
            .names
            .iter()
            .filter(|n| a[by_name[n.as_str()]] == b[by_name[n.as_str()]])
            .count();
        assert_eq!(unchanged, 0, "a listed tag kept its value");
        assert!(site.names.len() < model.tag_count());
    }
}
