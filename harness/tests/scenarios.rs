//! Every architecture end to end in-process (short runs on a small site), and proof that
//! the integrity check and expectations can fail.

use harness::launch::{RunOptions, run_scenario};
use harness::scenario::{BackendKind, Scenario};

fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, "test.toml").unwrap()
}

const SMALL: &str = r#"
duration = "3s"
[site]
devices = 4
tags_per_device = 16
scan_period = "50ms"
[redundancy]
heartbeat = "50ms"
failover_timeout = "300ms"
[connector]
source_timeout = "200ms"
[third_party]
clients = 2
poll_period = "50ms"
writes_per_s = 10
"#;

// No timing limits here (speed belongs to benches and reports): correctness only, and
// every fault must be recovered from (asserted below).
const EXPECT: &str = r#"
[expect]
max_values_wrong = 0
max_writes_lost = 0
min_writes_applied = 1
"#;

/// Architecture 1 has no pair: its scenarios may not carry a `[redundancy]` section.
fn without_redundancy(text: &str) -> String {
    text.replace(
        "[redundancy]\nheartbeat = \"50ms\"\nfailover_timeout = \"300ms\"\n",
        "",
    )
}

async fn run(text: String) -> harness::report::Report {
    run_scenario(
        &scenario(&text),
        RunOptions {
            backend: BackendKind::Inprocess,
            quiet: true,
            keep_logs: false,
        },
    )
    .await
    .unwrap()
}

fn assert_passed(r: &harness::report::Report) {
    assert!(r.passed, "{}", r.render_table());
    assert!(
        r.failovers.iter().all(|f| f.recovered),
        "{}",
        r.render_table()
    );
    assert!(
        r.ingest.updates_per_s > 0.0 && r.modbus.values_per_s > 0.0,
        "{}",
        r.render_table()
    );
    assert!(r.integrity.values_checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn architecture_1_end_to_end() {
    let r = run(format!(
        "name = \"a1\"\narchitecture = 1\n{}{EXPECT}",
        without_redundancy(SMALL)
    ))
    .await;
    assert_passed(&r);
    assert_eq!(
        (
            r.licences.po_server,
            r.licences.smart_connector,
            r.licences.client_access
        ),
        (1, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn architecture_2_primary_crash() {
    let text = format!(
        "name = \"a2\"\narchitecture = 2\n{}\nkind = \"redundant\"\n[[fault]]\nat = \"1s\"\naction = \"crash\"\ntarget = \"po-a\"\n{EXPECT}",
        SMALL.trim_end()
    );
    let r = run(text).await;
    assert_passed(&r);
    assert_eq!(r.failovers.len(), 1);
    assert!(r.failovers[0].recovered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn architecture_3_split_brain_and_connector_crash() {
    let text = format!(
        "name = \"a3\"\narchitecture = 3\n{}\nkind = \"redundant\"\n\
         [[fault]]\nat = \"600ms\"\naction = \"cut\"\ntarget = \"po-a<->po-b\"\n\
         [[fault]]\nat = \"1500ms\"\naction = \"heal\"\ntarget = \"po-a<->po-b\"\n\
         [[fault]]\nat = \"2s\"\naction = \"crash\"\ntarget = \"sc-a\"\n{EXPECT}",
        SMALL.trim_end()
    );
    let r = run(text).await;
    assert_passed(&r);
    assert_eq!(r.failovers.len(), 3);
    assert_eq!(r.licences.client_access, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_with_the_wrong_word_order_reads_wrong_values() {
    // The connector serves little-endian words; the third party expects big.
    let text = format!(
        "name = \"wrong-order\"\narchitecture = 1\n{}\nword_order = \"big\"\n[connector]\nword_order = \"little\"\n{EXPECT}",
        without_redundancy(SMALL)
            .replace("[connector]\nsource_timeout = \"200ms\"\n", "")
            .trim_end()
    );
    let r = run(text).await;
    assert!(!r.passed);
    assert!(r.integrity.values_wrong > 0, "{}", r.render_table());
    let e = r
        .expectations
        .iter()
        .find(|e| e.name == "max_values_wrong")
        .unwrap();
    assert!(!e.passed);
}

/// `[security] tls` in every architecture: links over TLS (licences bound in the one
/// that has them), masters over Modbus/TCP Security, and a connector crash recovered
/// with a fresh handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_architecture_runs_with_tls_on_every_link() {
    const TLS: &str = "[security]\ntls = true\n";
    let a1 = run(format!(
        "name = \"a1-tls\"\narchitecture = 1\n{}{TLS}{EXPECT}",
        without_redundancy(SMALL)
    ))
    .await;
    assert_passed(&a1);
    let a2 = run(format!(
        "name = \"a2-tls\"\narchitecture = 2\n{}\nkind = \"redundant\"\n{TLS}\
         [[fault]]\nat = \"1s\"\naction = \"crash\"\ntarget = \"po-a\"\n{EXPECT}",
        SMALL.trim_end()
    ))
    .await;
    assert_passed(&a2);
    assert_eq!(a2.failovers.len(), 1);
    let a3 = run(format!(
        "name = \"a3-tls\"\narchitecture = 3\n{}\nkind = \"redundant\"\n{TLS}\
         [[fault]]\nat = \"1s\"\naction = \"crash\"\ntarget = \"sc-a\"\n{EXPECT}",
        SMALL.trim_end()
    ))
    .await;
    assert_passed(&a3);
    assert_eq!(a3.licences.client_access, 2);
}

/// A viewer's writes are refused (exception 01) and counted as refused, never as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_masters_writes_are_refused_and_counted() {
    let r = run(format!(
        "name = \"a3-viewer\"\narchitecture = 3\n{}\nkind = \"redundant\"\n\
         [security]\ntls = true\nroles = [\"viewer\"]\n\
         [expect]\nmax_values_wrong = 0\nmax_writes_lost = 0\nmin_writes_refused = 1\n",
        SMALL.trim_end()
    ))
    .await;
    assert_passed(&r);
    assert_eq!(r.writes.applied, 0, "{}", r.render_table());
    assert_eq!(r.writes.refused, r.writes.sent, "{}", r.render_table());
}
