//! Scenario-file validation: every rule serde cannot express is enforced, alone, and the
//! problem names the line and the key (docs/scenarios.md). Fast: no scenario is run.

use harness::scenario::{BackendKind, FaultAction, Scenario, ScenarioError};
use smart_connector::registers::WordOrder;

/// A valid architecture-3 file; the cases below break one rule each.
const VALID: &str = r#"name = "t"
architecture = 3
duration = "10s"

[site]
devices = 2
tags_per_device = 4
scan_period = "100ms"

[redundancy]
heartbeat = "100ms"

[third_party]
kind = "redundant"
clients = 1
poll_period = "100ms"
writes_per_s = 0

[[fault]]
at = "1s"
action = "crash"
target = "po-a"

[[fault]]
at = "2s"
action = "delay"
target = "po-a<->po-b"
latency = "50ms"
"#;

/// `VALID` with the first `from` replaced by `to` (which must be there).
fn with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    VALID.replacen(from, to, 1)
}

/// The problems of a file as `(line, key)`, and the messages.
fn problems(text: &str) -> (Vec<(Option<usize>, String)>, Vec<String>) {
    match Scenario::parse(text, "t.toml") {
        Ok(_) => (vec![], vec![]),
        Err(e) => (
            e.problems.iter().map(|p| (p.line, p.key.clone())).collect(),
            e.problems.iter().map(|p| p.message.clone()).collect(),
        ),
    }
}

/// Asserts exactly one problem, at `line` with `key`, whose message contains `says`.
#[track_caller]
fn one(text: &str, line: usize, key: &str, says: &str) {
    let (found, messages) = problems(text);
    assert_eq!(found, vec![(Some(line), key.to_string())], "{messages:?}");
    assert!(
        messages[0].contains(says),
        "{messages:?} should say {says:?}"
    );
}

#[test]
fn valid_files_of_every_architecture_parse() {
    let s = Scenario::parse(VALID, "t.toml").unwrap();
    assert_eq!(
        (s.name.as_str(), s.architecture, s.faults.len()),
        ("t", 3, 2)
    );
    let two = with("architecture = 3", "architecture = 2");
    assert!(
        Scenario::parse(&two, "t.toml").is_ok(),
        "{:?}",
        problems(&two)
    );
    let one_arch = "name = \"t\"\narchitecture = 1\nduration = \"1s\"\n";
    assert!(Scenario::parse(one_arch, "t.toml").is_ok());
    // Boundaries that are allowed: writes_per_s 0, a fault just before the end.
    let late = with("at = \"2s\"", "at = \"9999ms\"");
    assert!(
        Scenario::parse(&late, "t.toml").is_ok(),
        "{:?}",
        problems(&late)
    );
}

#[test]
fn architecture_is_checked_first_and_alone() {
    for arch in [0, 4] {
        // An empty name would be a second problem, but nothing else is checked against
        // an unknown architecture.
        let text = with("architecture = 3", &format!("architecture = {arch}"))
            .replace("name = \"t\"", "name = \"\"");
        one(&text, 2, "architecture", "use 1, 2 or 3");
    }
}

#[test]
fn each_rule_is_enforced_on_its_own() {
    one(&with("name = \"t\"", "name = \" \""), 1, "name", "empty");
    // (Without faults, which a zero duration would also make late.)
    let no_faults = VALID.split("[[fault]]").next().unwrap();
    one(
        &no_faults.replace("duration = \"10s\"", "duration = \"0s\""),
        3,
        "duration",
        "longer than 0",
    );
    for zero in ["devices = 0", "tags_per_device = 0", "scan_period = \"0s\""] {
        let key = zero.split(' ').next().unwrap();
        let text = VALID.replacen(&format!("{key} = "), &format!("{zero}\n#"), 1);
        one(&text, 6, "site.devices", "must all be > 0");
    }
    one(
        &with("clients = 1", "clients = 0"),
        15,
        "third_party.clients",
        "at least one",
    );
    one(
        &with("poll_period = \"100ms\"", "poll_period = \"0s\""),
        16,
        "third_party.poll_period",
        "longer than 0",
    );
    for bad in ["-1", "nan", "inf"] {
        one(
            &with("writes_per_s = 0", &format!("writes_per_s = {bad}")),
            17,
            "third_party.writes_per_s",
            "≥ 0",
        );
    }
}

#[test]
fn architecture_1_has_no_pair() {
    let arch1 = with("architecture = 3", "architecture = 1")
        .replace("target = \"po-a<->po-b\"", "target = \"po-a\"")
        .replace("action = \"delay\"", "action = \"restart\"")
        .replace("latency = \"50ms\"\n", "");
    let (found, messages) = problems(&arch1);
    assert_eq!(
        found,
        vec![
            (Some(10), "redundancy".to_string()),
            (Some(14), "third_party.kind".to_string())
        ],
        "{messages:?}"
    );
    // The same sections are fine with a pair.
    let arch2 = arch1.replace("architecture = 1", "architecture = 2");
    assert_eq!(problems(&arch2).0, vec![]);
}

#[test]
fn faults_are_checked_and_located_in_their_table() {
    one(
        &with("at = \"2s\"", "at = \"10s\""),
        25,
        "fault[1].at",
        "not before the end",
    );
    one(
        &with("at = \"1s\"", "at = \"11s\""),
        20,
        "fault[0].at",
        "not before the end",
    );
    // An unknown target: the list, and a hint only when a name is close.
    let (found, messages) = problems(&with("target = \"po-a\"", "target = \"po-x\""));
    assert_eq!(found, vec![(Some(22), "fault[0].target".to_string())]);
    assert!(messages[0].contains("one of: "), "{messages:?}");
    assert!(messages[0].contains("did you mean `po-a`?"), "{messages:?}");
    let (_, messages) = problems(&with("target = \"po-a\"", "target = \"nothing-like-it\""));
    assert!(!messages[0].contains("did you mean"), "{messages:?}");
    // An action the target does not take.
    one(
        &with("action = \"crash\"", "action = \"cut\""),
        21,
        "fault[0].action",
        "network faults act on links",
    );
    // `latency` belongs to delays, and delays need it.
    one(
        &with("latency = \"50ms\"\n", ""),
        24,
        "fault[1].latency",
        "needs `latency`",
    );
    // A key absent from a [[fault]] is located at that fault's header, not another's.
    one(
        &with(
            "action = \"crash\"\ntarget = \"po-a\"",
            "action = \"delay\"\ntarget = \"po-a<->po-b\"",
        ),
        19,
        "fault[0].latency",
        "needs `latency`",
    );
    one(
        &with(
            "target = \"po-a\"\n",
            "target = \"po-a\"\nlatency = \"5ms\"\n",
        ),
        23,
        "fault[0].latency",
        "only a delay fault",
    );
}

#[test]
fn a_key_not_in_the_file_is_located_at_its_table_or_not_at_all() {
    // `site.devices` stands for three keys; with `devices` absent the [site] header is
    // the place to look.
    let text = with("devices = 2\n", "").replace("tags_per_device = 4", "tags_per_device = 0");
    one(&text, 5, "site.devices", "must all be > 0");
    // A top-level key; a dotted key is looked up in its table.
    let e = Scenario::parse(
        "name = \"\"\narchitecture = 1\nduration = \"1s\"\n",
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml: 1 problem\n  t.toml:1:1: name: must not be empty"
    );
    let e = Scenario::parse(
        "architecture = 1\nname = \"t\"\nduration = \"1s\"\n[third_party]\nkind = \"redundant\"\n",
        "t.toml",
    )
    .unwrap_err();
    assert_eq!(e.problems[0].line, Some(5));
}

#[test]
fn type_errors_name_the_line_and_the_key_with_its_table() {
    let (found, messages) = problems(&with("clients = 1", "clients = \"one\""));
    assert_eq!(
        found,
        vec![(Some(15), "third_party.clients".to_string())],
        "{messages:?}"
    );
    let (found, _) = problems(&with("devices = 2", "devices = -2"));
    assert_eq!(found, vec![(Some(6), "site.devices".to_string())]);
    // In the second [[fault]]: the table is counted.
    let (found, _) = problems(&with("at = \"2s\"", "at = 2"));
    assert_eq!(found, vec![(Some(25), "fault[1].at".to_string())]);
    let (found, _) = problems(&with("at = \"1s\"", "at = 1"));
    assert_eq!(found, vec![(Some(20), "fault[0].at".to_string())]);
    // A top-level key, and an unknown table named where its header names it.
    let (found, _) = problems(&with("architecture = 3", "architecture = \"3\""));
    assert_eq!(found, vec![(Some(2), "architecture".to_string())]);
    let (found, messages) = problems(&with("[site]", "[sight]"));
    assert_eq!(found, vec![(Some(5), "sight".to_string())], "{messages:?}");
}

#[test]
fn every_problem_is_reported_one_per_line() {
    // Under a count, each as `file:line:column: key: message` (the connector and po-sim
    // print theirs the same way: po_runtime::config_diagnostics).
    let text = with("name = \"t\"", "name = \"\"").replace("clients = 1", "clients = 0");
    let e = Scenario::parse(&text, "dir/t.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "dir/t.toml: 2 problems\n  \
         dir/t.toml:1:1: name: must not be empty\n  \
         dir/t.toml:15:1: third_party.clients: at least one third party is needed to measure anything"
    );
    let e = ScenarioError {
        path: "p".into(),
        problems: vec![harness::scenario::Problem {
            line: None,
            column: None,
            key: "file".into(),
            message: "m".into(),
        }],
    };
    assert_eq!(e.to_string(), "p: 1 problem\n  p: file: m");
}

#[test]
fn load_reads_the_file_or_says_why_not() {
    let dir = std::env::temp_dir().join(format!("scenario-validation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ok.toml");
    std::fs::write(&path, VALID).unwrap();
    assert_eq!(Scenario::load(&path).unwrap().name, "t");
    let missing = dir.join("missing.toml");
    let e = Scenario::load(&missing).unwrap_err();
    assert_eq!(e.path, missing.display().to_string());
    assert_eq!(e.problems[0].key, "file");
    assert!(e.problems[0].message.starts_with("cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_are_those_of_the_file_format() {
    for b in [BackendKind::Inprocess, BackendKind::Process] {
        assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
    }
    use FaultAction::*;
    for a in [Crash, Restart, Pause, Resume, Cut, Heal, Delay] {
        assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
    }
    let s = Scenario::parse(VALID, "t.toml").unwrap();
    assert_eq!(s.faults[0].label(), "crash po-a");
    assert_eq!(s.faults[1].label(), "delay po-a<->po-b 50ms");
    assert_eq!(s.seed, 7, "the documented default seed");
}

#[test]
fn the_third_party_uses_the_connector_word_order_unless_told_otherwise() {
    let little = with(
        "[third_party]\n",
        "[connector]\nword_order = \"little\"\n\n[third_party]\n",
    );
    let s = Scenario::parse(&little, "t.toml").unwrap();
    assert_eq!(s.third_party_word_order(), WordOrder::Little);
    let miswired = little.replace(
        "kind = \"redundant\"",
        "kind = \"redundant\"\nword_order = \"big\"",
    );
    let s = Scenario::parse(&miswired, "t.toml").unwrap();
    assert_eq!(s.third_party_word_order(), WordOrder::Big);
}

#[test]
fn kernel_fault_actions_take_their_targets_and_keys() {
    // The second fault ([[fault]] on line 24, action 26, target 27, then its extra key on
    // 28) becomes each case.
    let second = |action: &str, target: &str, extra: &str| {
        with(
            "action = \"delay\"\ntarget = \"po-a<->po-b\"\nlatency = \"50ms\"\n",
            &format!("action = \"{action}\"\ntarget = \"{target}\"\n{extra}"),
        )
    };
    // Valid: each new action on what it acts on.
    for (action, target, extra) in [
        ("reject", "sc-a->po-a", ""),
        ("bandwidth", "sc-a->po-a", "rate = \"2mbit\"\n"),
        ("bandwidth", "po-a<->po-b", "rate = \"512kbit\"\n"),
        ("isolate", "host-a", ""),
        ("heal", "host-a", ""),
    ] {
        let text = second(action, target, extra);
        assert_eq!(
            problems(&text).0,
            vec![],
            "{action} {target}: {:?}",
            problems(&text).1
        );
    }
    one(
        &second("isolate", "sc-a->po-a", ""),
        26,
        "fault[1].action",
        "a link can be cut, rejected",
    );
    one(
        &second("isolate", "po-a", ""),
        26,
        "fault[1].action",
        "isolate acts on hosts",
    );
    one(
        &second("heal", "po-a", ""),
        26,
        "fault[1].action",
        "heal acts on links and on isolated hosts",
    );
    one(
        &second("bandwidth", "sc-a->po-a", ""),
        24,
        "fault[1].rate",
        "needs `rate`",
    );
    one(
        &second("bandwidth", "sc-a->po-a", "rate = \"fast\"\n"),
        28,
        "fault[1].rate",
        "`fast` is not a rate",
    );
    one(
        &second("bandwidth", "sc-a->po-a", "rate = \"0mbit\"\n"),
        28,
        "fault[1].rate",
        "is not a rate",
    );
    one(
        &second("reject", "sc-a->po-a", "rate = \"2mbit\"\n"),
        28,
        "fault[1].rate",
        "only a bandwidth fault",
    );
}

#[test]
fn what_each_backend_can_apply() {
    let with_second = |action: &str, extra: &str| {
        let text = with(
            "action = \"delay\"\ntarget = \"po-a<->po-b\"\nlatency = \"50ms\"\n",
            &format!("action = \"{action}\"\ntarget = \"sc-a->po-a\"\n{extra}"),
        );
        Scenario::parse(&text, "t.toml").unwrap()
    };
    let refused = |s: &Scenario, b: BackendKind| !harness::launch::unsupported_by(s, b).is_empty();
    use BackendKind::*;
    let loss = with_second("loss", "fraction = 0.1\n");
    let reject = with_second("reject", "");
    let bandwidth = with_second("bandwidth", "rate = \"1mbit\"\n");
    let cut = with_second("cut", "");
    for (s, name, can) in [
        (&loss, "loss", [false, false, true, true]),
        (&reject, "reject", [false, false, false, true]),
        (&bandwidth, "bandwidth", [false, false, false, true]),
        (&cut, "cut", [true, true, true, true]),
    ] {
        for (b, can) in [Inprocess, Process, Sim, Netns].into_iter().zip(can) {
            assert_eq!(!refused(s, b), can, "{name} on {}", b.as_str());
        }
    }
    let isolated = Scenario::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/arch3-primary-isolated.toml"
    )))
    .unwrap();
    assert!(refused(&isolated, Process) && refused(&isolated, Inprocess));
    assert!(!refused(&isolated, Sim) && !refused(&isolated, Netns));
}

#[test]
fn floods_name_a_listener_and_stay_inside_the_run() {
    let flood = |body: &str| format!("{VALID}\n[[flood]]\n{body}");
    // Valid: a listener of each kind.
    for target in ["po-a:client", "po-b:sync", "sc-a:modbus", "sc-b:http"] {
        let text = flood(&format!(
            "at = \"1s\"\ntarget = \"{target}\"\nconnections = 100\n"
        ));
        assert_eq!(
            problems(&text).0,
            vec![],
            "{target}: {:?}",
            problems(&text).1
        );
    }
    // The [[flood]] header is line 30: at 31, then target 32 and connections 33 (or
    // until 32, target 33).
    let (found, messages) = problems(&flood(
        "at = \"1s\"\ntarget = \"sc-a:sync\"\nconnections = 100\n",
    ));
    assert_eq!(found, vec![(Some(32), "flood[0].target".to_string())]);
    assert!(messages[0].contains("sc-a has no `sync` listener (it has: modbus, http)"));
    let (_, messages) = problems(&flood("at = \"1s\"\ntarget = \"sc-a\"\nconnections = 1\n"));
    assert!(
        messages[0].contains("is not `component:listener`"),
        "{messages:?}"
    );
    let (_, messages) = problems(&flood(
        "at = \"1s\"\ntarget = \"sc-x:http\"\nconnections = 1\n",
    ));
    assert!(
        messages[0].contains("`sc-x` is not a component"),
        "{messages:?}"
    );
    let (found, _) = problems(&flood(
        "at = \"1s\"\ntarget = \"sc-a:http\"\nconnections = 0\n",
    ));
    assert_eq!(found, vec![(Some(33), "flood[0].connections".to_string())]);
    let (found, _) = problems(&flood(
        "at = \"5s\"\nuntil = \"4s\"\ntarget = \"sc-a:http\"\nconnections = 1\n",
    ));
    assert_eq!(found, vec![(Some(32), "flood[0].until".to_string())]);
    let (found, _) = problems(&flood(
        "at = \"10s\"\ntarget = \"sc-a:http\"\nconnections = 1\n",
    ));
    assert_eq!(found, vec![(Some(31), "flood[0].at".to_string())]);
    // Floods need component processes.
    let s = Scenario::parse(
        &flood("at = \"1s\"\ntarget = \"sc-a:http\"\nconnections = 1\n"),
        "t.toml",
    )
    .unwrap();
    for (b, refused) in [
        (BackendKind::Inprocess, true),
        (BackendKind::Sim, true),
        (BackendKind::Process, false),
        (BackendKind::Netns, false),
    ] {
        assert_eq!(
            !harness::launch::unsupported_by(&s, b).is_empty(),
            refused,
            "{}",
            b.as_str()
        );
    }
}

#[test]
fn the_sim_backend_refuses_a_site_larger_than_it_takes() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/arch3-million.toml");
    let s = Scenario::load(&path).unwrap();
    let refusals = harness::launch::unsupported_by(&s, BackendKind::Sim);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].0, "site");
    assert!(refusals[0].1.contains("1000000 tags"), "{}", refusals[0].1);
    for b in [
        BackendKind::Inprocess,
        BackendKind::Process,
        BackendKind::Netns,
    ] {
        assert!(
            harness::launch::unsupported_by(&s, b).is_empty(),
            "{}",
            b.as_str()
        );
    }
}

#[test]
fn the_delayed_links_are_those_a_delay_fault_names() {
    let s = Scenario::parse(VALID, "t.toml").unwrap();
    assert_eq!(
        s.delayed_links().into_iter().collect::<Vec<_>>(),
        ["po-a<->po-b"]
    );
    let none = Scenario::parse(
        &with("action = \"delay\"", "action = \"cut\"").replace("latency = \"50ms\"\n", ""),
        "t.toml",
    )
    .unwrap();
    assert!(none.delayed_links().is_empty());
}

#[test]
fn boundaries_that_mutation_testing_found_unpinned() {
    // A flood may last until the end of the run, not past it, and never ends before it
    // starts; its label names target, mode and count.
    let flood = |body: &str| format!("{VALID}\n[[flood]]\n{body}");
    let until = |u: &str| {
        problems(&flood(&format!(
            "at = \"1s\"\nuntil = \"{u}\"\ntarget = \"sc-a:http\"\nconnections = 1\n"
        )))
        .0
    };
    assert_eq!(until("10s"), vec![], "until the end is fine");
    assert_eq!(until("5s"), vec![]);
    assert_eq!(until("11s"), vec![(Some(32), "flood[0].until".to_string())]);
    let s = Scenario::parse(
        &flood("at = \"1s\"\ntarget = \"sc-a:http\"\nconnections = 2000\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(s.floods[0].label(), "sc-a:http idle ×2000");

    // A loss fraction lies in 0.0..=1.0.
    let loss = |f: &str| {
        problems(&with(
            "action = \"delay\"\ntarget = \"po-a<->po-b\"\nlatency = \"50ms\"",
            &format!("action = \"loss\"\ntarget = \"po-a<->po-b\"\nfraction = {f}"),
        ))
        .1
    };
    assert_eq!(loss("1.0"), Vec::<String>::new());
    assert_eq!(loss("0.0"), Vec::<String>::new());
    let bad = loss("1.5");
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("fraction"), "{bad:?}");

    // The sim backend takes a site of exactly SIM_MAX_TAGS tags; invariants are refused
    // by every backend but sim.
    let at_limit = with(
        "devices = 2\ntags_per_device = 4",
        "devices = 4000\ntags_per_device = 50",
    );
    let s = Scenario::parse(&at_limit, "t.toml").unwrap();
    assert_eq!(
        u64::from(s.site.devices) * u64::from(s.site.tags_per_device),
        harness::sim::SIM_MAX_TAGS
    );
    assert!(harness::launch::unsupported_by(&s, BackendKind::Sim).is_empty());
    let inv = format!("{VALID}\n[expect]\ninvariants = true\n");
    let s = Scenario::parse(&inv, "t.toml").unwrap();
    assert!(harness::launch::unsupported_by(&s, BackendKind::Sim).is_empty());
    assert_eq!(
        harness::launch::unsupported_by(&s, BackendKind::Process).len(),
        1
    );

    // A rate is a number then a unit tc reads: what precedes the unit is the number.
    assert!(harness::scenario::parse_rate("100000bit").is_ok());
    assert!(harness::scenario::parse_rate("10xbit").is_err());
}

/// `VALID` with OPC UA clients beside its Modbus master.
fn with_opcua(section: &str) -> String {
    format!("{VALID}\n[third_party.opcua]\n{section}")
}

#[test]
fn opcua_clients_are_a_subtable_of_third_party_and_mix_with_masters() {
    let s = Scenario::parse(
        &with_opcua(
            "kind = \"redundant\"\nclients = 2\nwrites_per_s = 3\nsecurity = \"basic256sha256/sign-and-encrypt\"\nusers = [\"operator\", \"viewer\"]\n",
        ),
        "t.toml",
    )
    .unwrap();
    let o = s.third_party.opcua.as_ref().unwrap();
    assert_eq!(s.third_party.clients, 1, "the Modbus master stays");
    assert_eq!(o.clients, 2);
    assert_eq!(
        [o.user_of(0), o.user_of(1), o.user_of(2)].map(|u| u.map(|r| r.as_str())),
        [Some("operator"), Some("viewer"), Some("operator")]
    );
    // OPC UA only: no Modbus master at all is fine then.
    let only = with("clients = 1\n", "clients = 0\n");
    assert!(Scenario::parse(&format!("{only}\n[third_party.opcua]\n"), "t.toml").is_ok());
    // Without [third_party.opcua], no master is no third party.
    one(&only, 15, "third_party.clients", "at least one third party");
}

#[test]
fn opcua_client_keys_are_checked_and_located() {
    let text = "name = \"t\"\narchitecture = 1\nduration = \"2s\"\n\n[third_party.opcua]\nkind = \"redundant\"\nclients = 0\nusers = [\"viewer\"]\npublishing_interval = \"0s\"\nwrites_per_s = -1\n";
    let e = Scenario::parse(text, "t.toml").unwrap_err();
    insta::assert_snapshot!(e.to_string());
    let bad_security = with_opcua("security = \"rot13\"\n");
    let (found, messages) = problems(&bad_security);
    assert_eq!(
        found,
        vec![(Some(31), "third_party.opcua.security".to_string())],
        "{messages:?}"
    );
}

#[test]
fn opcua_clients_run_on_the_process_and_netns_backends_only() {
    let s = Scenario::parse(&with_opcua(""), "t.toml").unwrap();
    assert_eq!(
        harness::launch::runnable_on(&s),
        vec![BackendKind::Process, BackendKind::Netns]
    );
    let refusal = harness::launch::refusal(&s, "t.toml", BackendKind::Sim);
    assert!(
        refusal[0]
            .starts_with("t.toml: third_party.opcua: the sim backend cannot run the OPC UA stack"),
        "{refusal:?}"
    );
    assert_eq!(
        refusal.last().map(String::as_str),
        Some("t.toml: backends that can run it: process, netns")
    );
    assert!(!harness::launch::refusal(&s, "t.toml", BackendKind::Inprocess).is_empty());
}
