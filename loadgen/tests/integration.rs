//! The real `loadgen` binary runs the shipped CI scenarios end to end (it starts the real
//! `pdf` and `gateway` from its own directory), and refuses broken scenarios clearly.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, OnceLock};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

fn scenario(name: &str) -> String {
    format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A `loadgen run` started in the background, its output in files beside its `--out`.
struct Run(Mutex<Option<(Child, tempfile::TempDir)>>);

/// A finished run; its directory goes when it is dropped.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    dir: tempfile::TempDir,
}

impl Finished {
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// The run's summary.json, once it is known to have passed (exit 0; its output shown
    /// if not).
    fn passed_report(&self) -> serde_json::Value {
        assert_eq!(
            self.status.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        serde_json::from_str(
            &std::fs::read_to_string(self.out().join("summary.json")).expect("summary.json"),
        )
        .expect("JSON")
    }
}

impl Run {
    fn start(args: &[&str]) -> Run {
        let dir = tempfile::Builder::new()
            .prefix("loadgen-run-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir");
        let file = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log");
        let child = Command::new(LOADGEN)
            .args(args)
            .arg("--out")
            .arg(dir.path().join("out"))
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("run loadgen");
        Run(Mutex::new(Some((child, dir))))
    }

    /// Waits for the run (each run is finished by one test).
    fn finish(&self) -> Finished {
        let (mut child, dir) = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("each run is finished once");
        let status = child.wait().expect("wait");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("log");
        Finished {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
            dir,
        }
    }
}

/// The runs with seconds of traffic. They mostly wait on the clock, and the test harness runs
/// only as many tests at once as there are cores, so they all start together the first time
/// a test needs one (a filtered test run starts them all the same).
struct Runs {
    smoke: Run,
    events: Run,
    restart: Run,
    restart_events: Run,
    drain: Run,
    migrate: Run,
    hot: Run,
    shards: [Run; 2],
}

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir = std::path::Path::new(LOADGEN).parent().expect("target dir");
        for binary in ["pdf", "gateway"] {
            assert!(
                dir.join(binary).exists(),
                "{binary} is not built beside the loadgen: run cargo build --workspace"
            );
        }
        let smoke = scenario("ci-smoke.toml");
        Runs {
            smoke: Run::start(&["run", &smoke]),
            events: Run::start(&["run", &scenario("ci-events.toml")]),
            restart: Run::start(&["run", &scenario("upgrade-restart.toml")]),
            restart_events: Run::start(&["run", &scenario("upgrade-restart-events.toml")]),
            drain: Run::start(&["run", &scenario("upgrade-drain.toml")]),
            migrate: Run::start(&["run", &scenario("upgrade-migrate.toml")]),
            hot: Run::start(&["run", &scenario("upgrade-hot.toml")]),
            // Each shard spawns its own pdf and gateway (each pdf holds the whole
            // population; each shard charges and checks only the accounts it owns).
            shards: [0, 1].map(|i| Run::start(&["run", &smoke, "--shard", &format!("{i}/2")])),
        }
    })
}

#[test]
fn ci_smoke_passes_its_thresholds_and_the_books_balance() {
    let run = runs().smoke.finish();
    let (stdout, stderr, out) = (&run.stdout, &run.stderr, run.out());
    assert_eq!(
        run.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("RESULT: pass"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("JSON");
    assert_eq!(report["report_version"], 1);
    assert_eq!(report["books"]["mismatches"], 0, "{report}");
    assert_eq!(report["books"]["pdf_books_ok"], true);
    assert!(report["books"]["accounts_compared"].as_u64().unwrap_or(0) > 1000);
    let started = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "START")
        .expect("START")["answered"]
        .as_u64();
    assert!(started.unwrap_or(0) > 100, "{report}");
    // Live sessions per PDF node, sampled from the gateway every second: the one node,
    // holding sessions while traffic runs; a column of timeline.csv and a plot.
    let samples = report["pdf_sessions"].as_array().expect("pdf_sessions");
    assert!(samples.len() >= 4, "{samples:?}");
    assert_eq!(samples[0]["second"], 1);
    let most = samples
        .iter()
        .map(|s| s["sessions"]["pdf0"].as_u64().expect("pdf0"))
        .max();
    assert!(most.unwrap_or(0) > 50, "{samples:?}");
    // The gateway's own latency, from its /metrics the same way: every second's ACRs on
    // the access leg add up to about what the loadgen got answered (the seconds' edges
    // differ by the sampling's milliseconds), and each leg's p99 is a column.
    let gateway = &report["gateway_latency"];
    let seconds = gateway["seconds"]
        .as_array()
        .expect("gateway_latency.seconds");
    assert!(seconds.len() >= 4, "{gateway}");
    assert_eq!(seconds[0]["second"], 1);
    let leg_total = |leg: &str| -> u64 {
        seconds
            .iter()
            .flat_map(|s| s[leg].as_array().expect("counts").clone())
            .map(|n| n.as_u64().expect("a count"))
            .sum()
    };
    let answered: u64 = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["answered"].as_u64().expect("answered"))
        .sum();
    let access = leg_total("access");
    assert!(
        access * 10 >= answered * 9 && access <= answered,
        "the gateway counted {access} ACRs, the loadgen {answered} answers"
    );
    assert!(leg_total("charging") * 10 >= access * 9, "{gateway}");
    assert!(
        stdout.contains("gateway's own p99, worst second of"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("timeline.csv")).expect("timeline.csv");
    assert!(
        csv.starts_with("second,answered,failed,live_sessions,lost_sessions,p50_us,p99_us,max_us,sessions_pdf0,gateway_access_p99_us,gateway_charging_p99_us\n"),
        "{csv}"
    );
    assert!(
        stderr.contains("req/s"),
        "progress lines on stderr: {stderr}"
    );

    // The HTML report beside summary.json, and `loadgen compare` on the same run (twice).
    let page = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(page.contains("<svg"), "report.html has no plot");
    assert!(page.contains("ci-smoke") && page.contains("Thresholds"));
    assert!(page.contains("Live sessions per PDF node"));
    assert!(page.contains("beside the gateway legs"));

    // latency.hlog: one histogram per second, step and latency kind; every answer once.
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let log = std::fs::read(out.join("latency.hlog")).expect("latency.hlog");
    let mut counts: std::collections::BTreeMap<String, (u64, usize)> = Default::default();
    let mut last_start = 0.0;
    for entry in IntervalLogIterator::new(&log) {
        let LogEntry::Interval(interval) = entry.expect("a log entry") else {
            continue;
        };
        let start = interval.start_timestamp().as_secs_f64();
        assert!(start >= last_start, "in time order");
        last_start = start;
        assert!(interval.duration().as_secs_f64() <= 1.0 + 1e-6);
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            interval.encoded_histogram(),
        )
        .expect("base64");
        let histogram: hdrhistogram::Histogram<u64> =
            hdrhistogram::serialization::Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .expect("a V2 histogram");
        let tag = interval.tag().expect("tagged").as_str().to_owned();
        let entry = counts.entry(tag).or_default();
        entry.0 += histogram.len();
        entry.1 += 1;
    }
    for step in report["steps"].as_array().expect("steps") {
        let name = step["step"].as_str().expect("step");
        let answered = step["answered"].as_u64().expect("answered");
        for kind in ["scheduled", "service"] {
            let (count, intervals) = counts[&format!("{name}.{kind}")];
            assert_eq!(count, answered, "{name}.{kind}: {counts:?}");
            assert!(intervals >= 6, "{name}.{kind}: {intervals} intervals");
        }
    }
    // `loadgen latency`: the whole log gives every answer and the run's percentiles; a
    // window from second 2 fewer answers.
    let latency = |from: &str| -> serde_json::Value {
        let output = Command::new(LOADGEN)
            .arg("latency")
            .arg(out.join("latency.hlog"))
            .args(["--from", from, "--json"])
            .output()
            .expect("run loadgen latency");
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).expect("latency JSON")
    };
    let whole = latency("0");
    let window = latency("2");
    for step in report["steps"].as_array().expect("steps") {
        let name = step["step"].as_str().expect("step");
        let tag = format!("{name}.scheduled");
        let row = |rows: &serde_json::Value| {
            rows.as_array()
                .expect("rows")
                .iter()
                .find(|r| r["tag"] == tag.as_str())
                .cloned()
        };
        let all = row(&whole).expect("every step in the whole log");
        assert_eq!(all["count"], step["answered"], "{all}");
        assert_eq!(all["p99_us"], step["scheduled_us"]["p99"], "{all} {step}");
        if let Some(part) = row(&window) {
            assert!(
                part["count"].as_u64() < all["count"].as_u64(),
                "{part} {all}"
            );
        }
    }
    let missing = Command::new(LOADGEN)
        .args(["latency", "no-such.hlog"])
        .output()
        .expect("run loadgen latency");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such.hlog"));

    let summary = out.join("summary.json").display().to_string();
    let output = Command::new(LOADGEN)
        .args(["compare", &summary, &summary, "--out"])
        .arg(&out)
        .output()
        .expect("run loadgen compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "ci-smoke #1",
        "ci-smoke #2",
        "p99 START ms",
        "lost (infrastructure)",
    ] {
        assert!(stdout.contains(row), "{row} missing from:\n{stdout}");
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("result") && l.matches("pass").count() == 2),
        "{stdout}"
    );
    let page = std::fs::read_to_string(out.join("compare.html")).expect("compare.html");
    assert!(page.contains("<svg"));
    let output = Command::new(LOADGEN)
        .args(["compare", &summary, "no-such-summary.json"])
        .output()
        .expect("run loadgen compare");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-summary.json"));
}

#[test]
fn broken_scenarios_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("typo.toml", "schema = 1\nname = \"x\"\nduration = \"1s\"\n[[mix]]\nname = \"v\"\nkind = \"voice\"\nweight = 1\nduration = { dist = \"constant\", value = \"1m\" }\ninterval = \"30s\"\n[load]\nconcurent_sessions = 3\n", "concurent_sessions"),
        ("schema.toml", "schema = 2\nname = \"x\"\nduration = \"1s\"\nmix = []\n[load]\nconcurrent_sessions = 1\n", "schema"),
        ("duration.toml", "schema = 1\nname = \"x\"\nduration = \"2 fortnights\"\nmix = []\n[load]\nconcurrent_sessions = 1\n", "duration"),
        ("interval.toml", "schema = 1\nname = \"x\"\nduration = \"1s\"\n[[mix]]\nname = \"v\"\nkind = \"voice\"\nweight = 1\nduration = { dist = \"constant\", value = \"1m\" }\n[load]\nconcurrent_sessions = 3\n", "mix[0] (v).interval"),
        ("upgrade.toml", "schema = 1\nname = \"x\"\nduration = \"10s\"\n[[mix]]\nname = \"s\"\nkind = \"event\"\nweight = 1\n[load]\nconcurrent_sessions = 3\n[[event]]\nat = \"5s\"\naction = \"upgrade\"\nstrategy = \"hot-swap\"\n", "event[0] (upgrade).strategy: \"hot-swap\" is not a strategy"),
        ("pareto.toml", "schema = 1\nname = \"x\"\nduration = \"1s\"\n[[mix]]\nname = \"v\"\nkind = \"voice\"\nweight = 1\nduration = { dist = \"pareto\", scale = \"1m\", shape = -1 }\ninterval = \"30s\"\n[load]\nconcurrent_sessions = 3\n", "mix[0] (v).duration: pareto needs scale > 0 and shape > 0"),
        ("csv.toml", "schema = 1\nname = \"x\"\nduration = \"1s\"\n[[mix]]\nname = \"v\"\nkind = \"voice\"\nweight = 1\nduration = { dist = \"empirical\", file = \"lengths.csv\" }\ninterval = \"30s\"\n[load]\nconcurrent_sessions = 3\n", "lengths.csv line 3"),
    ];
    std::fs::write(dir.path().join("lengths.csv"), "seconds\n60\nsixty\n").expect("write");
    for (file, text, key) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("write");
        let output = Command::new(LOADGEN)
            .args(["check", &path.display().to_string()])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{file}: {stderr}");
        assert!(
            stderr.contains(file) && stderr.contains(key),
            "{file}: {stderr}"
        );
    }
    let output = Command::new(LOADGEN)
        .args(["check", &scenario("quickstart.toml")])
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn two_shards_merge_to_the_sums_of_their_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shards: Vec<Finished> = runs().shards.iter().map(Run::finish).collect();
    let mut reports = Vec::new();
    for run in &shards {
        assert_eq!(
            run.status.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
        let path = run.out().join("summary.json");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("summary.json"))
                .expect("JSON");
        reports.push((path, report));
    }
    for (i, (_, report)) in reports.iter().enumerate() {
        assert_eq!(report["shard"]["index"], i as u64);
        assert_eq!(report["shard"]["count"], 2);
        assert!(report["steps"][0]["scheduled_hist"]
            .as_str()
            .is_some_and(|h| h.starts_with("HISTF")));
    }
    let merged_dir = dir.path().join("merged");
    let merge = |files: &[&std::path::Path]| {
        let mut args = vec!["merge".to_owned()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        args.extend(["--out".to_owned(), merged_dir.display().to_string()]);
        Command::new(LOADGEN).args(&args).output().expect("merge")
    };
    let output = merge(&[&reports[1].0, &reports[0].0]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("merged from 2 shard reports") && stdout.contains("RESULT: pass"),
        "{stdout}"
    );
    let merged: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(merged_dir.join("summary.json")).expect("merged summary.json"),
    )
    .expect("JSON");
    let sum = |get: &dyn Fn(&serde_json::Value) -> u64| -> u64 {
        reports.iter().map(|(_, r)| get(r)).sum()
    };
    let step = |r: &serde_json::Value, name: &str, key: &str| -> u64 {
        r["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["step"] == name)
            .map_or(0, |s| s[key].as_u64().expect("count"))
    };
    for name in ["START", "INTERIM", "STOP", "EVENT"] {
        for key in ["sent", "answered", "timeouts"] {
            assert_eq!(
                step(&merged, name, key),
                sum(&|r| step(r, name, key)),
                "{name} {key}"
            );
        }
        // A merged percentile lies between the shards' (it is not their average).
        let p99 = |r: &serde_json::Value| {
            r["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .find(|s| s["step"] == name)
                .map(|s| s["scheduled_us"]["p99"].as_u64().expect("p99"))
        };
        let shard_p99: Vec<u64> = reports.iter().filter_map(|(_, r)| p99(r)).collect();
        if let Some(merged_p99) = p99(&merged) {
            let (lo, hi) = (shard_p99.iter().min(), shard_p99.iter().max());
            assert!(
                lo.is_some_and(|lo| *lo <= merged_p99) && hi.is_some_and(|hi| merged_p99 <= *hi),
                "{name}: {merged_p99} not within {shard_p99:?}"
            );
        }
    }
    for key in ["completed", "charged_out", "refused"] {
        assert_eq!(
            merged["sessions"][key],
            sum(&|r| r["sessions"][key].as_u64().expect("count")),
            "{key}"
        );
    }
    for key in ["accounts_compared", "accounts_uncertain", "mismatches"] {
        assert_eq!(
            merged["books"][key],
            sum(&|r| r["books"][key].as_u64().expect("count")),
            "{key}"
        );
    }
    // Together the shards checked every account of ci-smoke's population exactly once:
    // 2000 subscribers, 400 of them in 200 families of 2, so 1800 accounts.
    let covered = merged["books"]["accounts_compared"].as_u64().unwrap_or(0)
        + merged["books"]["accounts_uncertain"].as_u64().unwrap_or(0);
    assert_eq!(covered, 1800, "{}", merged["books"]);
    assert_eq!(merged["books"]["mismatches"], 0);
    assert_eq!(merged["merged"]["shards"], 2);
    assert_eq!(
        merged["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .map(|r| r["answered"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        sum(&|r| r["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .map(|r| r["answered"].as_u64().unwrap_or(0))
            .sum())
    );
    // The merged interval log: the shards' logs added up; per step, every answer once and
    // the merged run's p99 (exact, from the same histograms).
    let output = Command::new(LOADGEN)
        .arg("latency")
        .arg(merged_dir.join("latency.hlog"))
        .arg("--json")
        .output()
        .expect("run loadgen latency");
    assert!(output.status.success(), "{output:?}");
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    for name in ["START", "INTERIM", "STOP", "EVENT"] {
        let answered = step(&merged, name, "answered");
        let row = rows
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["tag"] == format!("{name}.scheduled"));
        match row {
            Some(row) => {
                assert_eq!(row["count"].as_u64(), Some(answered), "{name}: {row}");
                let merged_step = merged["steps"]
                    .as_array()
                    .expect("steps")
                    .iter()
                    .find(|s| s["step"] == name)
                    .expect("step");
                assert_eq!(row["p99_us"], merged_step["scheduled_us"]["p99"], "{name}");
            }
            None => assert_eq!(answered, 0, "{name} missing from the merged log"),
        }
    }

    // Not one whole run: refused with exit 2.
    let output = merge(&[&reports[0].0, &reports[0].0]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("both shard 0/2"));
    let output = merge(&[&reports[1].0]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("shard 0/2 missing"));
}

#[test]
fn schema_prints_a_json_schema_of_the_format() {
    let output = Command::new(LOADGEN).arg("schema").output().expect("run");
    assert!(output.status.success(), "{output:?}");
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    for key in [
        "schema",
        "name",
        "duration",
        "population",
        "mix",
        "load",
        "slo",
    ] {
        assert!(schema["properties"].get(key).is_some(), "{key}");
    }
}

#[test]
fn a_shard_without_sessions_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.toml");
    std::fs::write(&path, "schema = 1\nname = \"tiny\"\nduration = \"1s\"\n[[mix]]\nname = \"v\"\nkind = \"voice\"\nweight = 1\nduration = { dist = \"constant\", value = \"1m\" }\ninterval = \"30s\"\n[load]\nconcurrent_sessions = 2\n").expect("write");
    let output = Command::new(LOADGEN)
        .args(["run", &path.display().to_string(), "--shard", "0/3"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("concurrent_sessions"), "{stderr}");
    let output = Command::new(LOADGEN)
        .args(["run", &path.display().to_string(), "--shard", "3/3"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn every_shipped_scenario_passes_check() {
    let dir = format!("{}/../scenarios", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for shipped in [
        "quickstart.toml",
        "ci-smoke.toml",
        "ci-events.toml",
        "busy-hour.toml",
    ] {
        assert!(
            names.iter().any(|n| n == shipped),
            "{shipped} not in {names:?}"
        );
    }
    for file in &files {
        assert_eq!(
            file.extension().and_then(|e| e.to_str()),
            Some("toml"),
            "{}: only scenario files belong directly in scenarios/ (data goes in scenarios/data/)",
            file.display()
        );
        let output = Command::new(LOADGEN)
            .arg("check")
            .arg(file)
            .output()
            .expect("run loadgen check");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("scenario ok"),
            "{}:\n{stdout}\n{}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_set_weight_event_turns_new_sessions_away_and_is_recorded() {
    // ci-events: at 2.5 s the only PDF node gets weight 0, so new STARTs are answered 3004
    // from then on; the sessions already placed go on (none is lost).
    let run = runs().events.finish();
    let (stdout, stderr, out) = (&run.stdout, &run.stderr, run.out());
    let report = run.passed_report();

    let events = report["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{report}");
    let weight = &events[0];
    assert_eq!(weight["action"], "set_weight");
    assert_eq!(weight["outcome"], "ok", "{weight}");
    assert_eq!(weight["at_s"], 2.5);
    let fired = weight["fired_s"].as_f64().expect("fired_s");
    assert!((2.5..3.0).contains(&fired), "{weight}");
    let command = &events[1];
    assert_eq!(command["action"], "command");
    assert_eq!(command["outcome"], "ok", "{command}");
    assert_eq!(command["exit_status"], 0);
    let log = std::fs::read_to_string(out.join("event-1.log")).expect("event-1.log");
    assert!(log.starts_with("gateway admin 127.0.0.1:"), "{log}");

    // START: accepted before the event, refused with 3004 (no PDF can take it) after it.
    let start = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "START")
        .expect("START");
    let results = &start["results"];
    assert!(results["2001"].as_u64().unwrap_or(0) > 100, "{start}");
    assert!(results["3004"].as_u64().unwrap_or(0) > 100, "{start}");
    // Per second: no failure in the seconds before the event, failures after it.
    let timeline = report["timeline"].as_array().expect("timeline");
    let failed = |keep: &dyn Fn(f64) -> bool| -> u64 {
        timeline
            .iter()
            .filter(|r| keep(r["second"].as_f64().unwrap_or(0.0)))
            .map(|r| r["failed"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(failed(&|second| second <= fired.floor()), 0, "{timeline:?}");
    assert!(failed(&|second| second > fired) > 100, "{timeline:?}");
    assert_eq!(
        report["sessions"]["lost"],
        serde_json::json!({}),
        "{report}"
    );
    assert!(report["sessions"]["refused"].as_u64().unwrap_or(0) > 100);
    assert_eq!(report["books"]["mismatches"], 0);

    // The two [[slo.window]] entries: judged over the seconds they overlap, and passed.
    let windows = report["slo_windows"].as_array().expect("slo_windows");
    assert_eq!(windows.len(), 2, "{report}");
    assert_eq!(windows[0]["name"], "before");
    assert_eq!(windows[0]["seconds"], serde_json::json!([1, 2]));
    assert_eq!(windows[1]["name"], "weight-0");
    assert_eq!(windows[1]["from_s"], 2.5);
    assert_eq!(windows[1]["to_s"], 4.5);
    assert_eq!(windows[1]["seconds"], serde_json::json!([3, 4, 5]));
    let verdict = |name: &str| {
        report["thresholds"]
            .as_array()
            .expect("thresholds")
            .iter()
            .find(|t| t["threshold"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {report}"))
            .clone()
    };
    assert_eq!(verdict("before.failed_requests")["measured"], "0");
    assert_eq!(verdict("weight-0.dropped_sessions")["passed"], true);
    assert_eq!(verdict("weight-0.min_answered_per_second")["passed"], true);
    assert!(
        stdout.contains("window weight-0: 2.5 s to 4.5 s after traffic started (event[0] set_weight pdf0 = 0 + 2 s), judged over seconds 3-5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("threshold weight-0.dropped_sessions"),
        "{stdout}"
    );

    // The terminal summary lists the events; report.html marks them on its plots.
    assert!(stdout.contains("events:"), "{stdout}");
    assert!(
        stdout.contains("ok      set_weight pdf0 = 0: HTTP 200"),
        "{stdout}"
    );
    assert!(
        stderr.contains("event at 2.5 s: set_weight pdf0 = 0: ok"),
        "{stderr}"
    );
    let page = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(page.contains("<h2>Events</h2>"));
    assert_eq!(
        page.matches("E1 set_weight").count(),
        6,
        "a marker on each plot (the fifth: live sessions per PDF node; the sixth: the \
         gateway's own latency)"
    );
}

#[test]
fn a_restart_under_events_charges_none_twice() {
    // upgrade-restart-events: 1,000 new sessions a second, 80% one CCR-EVENT each, and a
    // restart at 2 s. The EVENTs the pdf holds at its SIGTERM are answered before its DPR;
    // before that fix the gateway re-sent them to the restarted pdf and one or two runs in
    // three charged an account twice (the books check's "charged too much").
    let run = runs().restart_events.finish();
    let report = run.passed_report();
    assert_eq!(report["events"][0]["outcome"], "ok", "{}", report["events"]);
    let events = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["step"] == "EVENT")
        .expect("an EVENT step");
    assert!(events["answered"].as_u64().unwrap_or(0) > 2000, "{events}");
    assert_eq!(report["books"]["mismatches"], 0, "{}", report["books"]);
    assert_eq!(
        report["upgrade"]["overcharged_accounts"], 0,
        "{}",
        report["upgrade"]
    );
    assert_stopped(&report);
}

#[test]
fn a_restart_upgrade_loses_the_live_sessions_but_not_a_cent() {
    // upgrade-restart: at 2 s the pdf is stopped (SIGTERM: DPR REBOOTING) and started again
    // on the same addresses and data directory. Every session live then is lost (5002 at its
    // next record); the balances come back from the journal, so the books stay exact.
    let run = runs().restart.finish();
    let stdout = &run.stdout;
    let report = run.passed_report();
    let events = report["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{report}");
    assert_eq!(events[0]["action"], "upgrade");
    assert_eq!(events[0]["outcome"], "ok", "{}", events[0]);
    let lost = report["sessions"]["lost"]["unknown_session"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        lost > 100,
        "the sessions live at the restart are lost: {}",
        report["sessions"]
    );
    assert_eq!(report["books"]["pdf_books_ok"], true, "{}", report["books"]);
    let compared = report["books"]["accounts_compared"].as_u64().unwrap_or(0);
    let uncertain = report["books"]["accounts_uncertain"].as_u64().unwrap_or(0);
    assert_eq!(compared + uncertain, 1800, "{}", report["books"]);
    // Exact: a record whose answer was lost around the restart (the old pdf may have charged
    // it) leaves its account out; every other account matches usage x tariff to the unit.
    assert_eq!(report["books"]["mismatches"], 0, "{}", report["books"]);
    assert!(stdout.contains("upgrade pdf (restart)"), "{stdout}");

    // The upgrade report: what the restart cost.
    let upgrade = &report["upgrade"];
    assert_eq!(
        upgrade["strategies"],
        serde_json::json!(["restart"]),
        "{upgrade}"
    );
    assert_eq!(upgrade["upgrades"][0]["ok"], true, "{upgrade}");
    // Every session lost to the infrastructure, whatever the cause: most are unknown to the
    // restarted pdf; under load a few START in the gap find no pdf at all.
    let lost_total: u64 = report["sessions"]["lost"]
        .as_object()
        .expect("lost by cause")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(
        upgrade["sessions_cut"], lost_total,
        "{}",
        report["sessions"]
    );
    assert!(upgrade["completed_s"].as_f64().is_some(), "{upgrade}");
    assert!(upgrade["pause"]["ms"].as_u64().is_some(), "{upgrade}");
    // The pdf's DPR closed every pooled connection (topology.pdf_connections = 2).
    assert!(
        upgrade["connections_closed"].as_u64().unwrap_or(0) >= 2,
        "{upgrade}"
    );
    assert!(
        upgrade["longest_below_slo_s"].as_u64().unwrap_or(0) >= 1,
        "{upgrade}"
    );
    assert_eq!(upgrade["overcharged_accounts"], 0, "{upgrade}");
    assert_eq!(upgrade["undercharged_accounts"], 0, "{upgrade}");
    assert!(stdout.contains("upgrade:\n  restart at"), "{stdout}");
    assert_stopped(&report);
}

/// Every pdf the run names (old and new pids of its upgrades) is gone: the loadgen stops
/// what it started.
fn assert_stopped(report: &serde_json::Value) {
    for upgrade in report["upgrade"]["upgrades"].as_array().expect("upgrades") {
        for key in ["old_pid", "new_pid"] {
            let Some(pid) = upgrade[key].as_u64() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
            let state = stat
                .as_deref()
                .ok()
                .and_then(|s| s.rsplit(')').next())
                .and_then(|s| s.split_whitespace().next());
            assert!(
                matches!(state, None | Some("Z" | "X")),
                "pdf {pid} ({key}) still running after the run: {stat:?}"
            );
        }
    }
}

#[test]
fn a_drain_upgrade_cuts_no_session_and_the_books_of_both_pdfs_add_up() {
    // upgrade-drain: at 3 s a second pdf starts (its own journal), joins the gateway as
    // pdf1, pdf0's weight goes to 0; when pdf0 has no session left it is stopped with
    // SIGTERM (DPR, exit 0). Nothing is cut, and each account's debits on pdf0 + pdf1 equal
    // its usage x tariff exactly.
    let run = runs().drain.finish();
    let (stdout, stderr, out) = (&run.stdout, &run.stderr, run.out());
    let report = run.passed_report();
    let events = report["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{report}");
    assert_eq!(events[0]["outcome"], "ok", "{}", events[0]);

    // No session cut by the infrastructure, no request failed.
    assert_eq!(
        report["sessions"]["lost"],
        serde_json::json!({}),
        "{}",
        report["sessions"]
    );
    let completed = report["sessions"]["completed"].as_u64().unwrap_or(0);
    assert!(
        completed > 1000,
        "thousands of sessions: {}",
        report["sessions"]
    );
    assert_eq!(report["failed_requests"], 0);

    // The books: both pdfs' debits added up, account by account, exact.
    let books = &report["books"];
    assert_eq!(
        books["nodes"],
        serde_json::json!(["pdf0", "pdf1"]),
        "{books}"
    );
    assert_eq!(books["pdf_books_ok"], true, "{books}");
    assert_eq!(books["mismatches"], 0, "{books}");
    assert_eq!(books["accounts_uncertain"], 0, "{books}");
    assert_eq!(books["accounts_compared"], 3600, "{books}");

    // The drain itself: the old pdf drained to 0, then exited 0 after SIGTERM.
    let upgrade = &report["upgrade"];
    let drain = &upgrade["upgrades"][0];
    assert_eq!(drain["strategy"], "drain", "{upgrade}");
    assert_eq!(drain["ok"], true, "{upgrade}");
    assert_eq!(drain["old_node"], "pdf0");
    assert_eq!(drain["new_node"], "pdf1");
    assert_eq!(drain["old_exit_status"], 0, "{upgrade}");
    assert!(
        drain["sessions_to_drain"].as_u64().unwrap_or(0) > 50,
        "{upgrade}"
    );
    let drained = drain["drain_s"].as_f64().expect("drain_s");
    let both = drain["side_by_side_s"].as_f64().expect("side_by_side_s");
    assert!(drained > 0.0 && both >= drained, "{upgrade}");
    assert_eq!(upgrade["sessions_cut"], 0, "{upgrade}");
    assert_eq!(upgrade["overcharged_accounts"], 0, "{upgrade}");
    assert_eq!(upgrade["undercharged_accounts"], 0, "{upgrade}");
    // Closed in order: the old pdf's DPR on each of the gateway's 2 connections to it.
    assert_eq!(upgrade["connections_closed"], 2, "{upgrade}");
    // Split brain is reported, not hidden (both pdfs started with every balance).
    assert_eq!(
        upgrade["split_brain"]["nodes"],
        serde_json::json!(["pdf0", "pdf1"])
    );
    assert!(upgrade["split_brain"]["accounts_on_both"]
        .as_u64()
        .is_some());
    assert!(stdout.contains("drained"), "{stdout}");
    assert!(stdout.contains("split brain (pdf0 + pdf1)"), "{stdout}");
    assert!(
        stderr.contains("sessions to drain on pdf0"),
        "progress: {stderr}"
    );
    // Each pdf had its own journal directory.
    assert!(out.join("pdf-data").is_dir() && out.join("pdf-data-pdf1").is_dir());
    assert_stopped(&report);
}

#[test]
fn a_hot_upgrade_closes_no_connection_cuts_no_session_and_keeps_the_books() {
    // upgrade-hot: at 3 s the pdf is asked to upgrade in place (POST /upgrade): the new
    // process takes the listening sockets, the gateway's connections and the state; the old
    // one exits 0 without DPR. Nothing is cut or closed, the books are exact.
    let run = runs().hot.finish();
    let report = run.passed_report();
    let events = report["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{report}");
    assert_eq!(events[0]["outcome"], "ok", "{}", events[0]);
    assert_eq!(
        report["sessions"]["lost"],
        serde_json::json!({}),
        "{}",
        report["sessions"]
    );
    assert!(report["sessions"]["completed"].as_u64().unwrap_or(0) > 500);
    assert_eq!(report["failed_requests"], 0);
    let books = &report["books"];
    assert_eq!(books["pdf_books_ok"], true, "{books}");
    assert_eq!(books["mismatches"], 0, "{books}");
    assert_eq!(books["accounts_uncertain"], 0, "{books}");

    let upgrade = &report["upgrade"];
    let hot = &upgrade["upgrades"][0];
    assert_eq!(hot["strategy"], "hot", "{upgrade}");
    assert_eq!(hot["ok"], true, "{upgrade}");
    assert_eq!(hot["old_exit_status"], 0, "{upgrade}");
    assert_ne!(hot["new_pid"], hot["old_pid"], "{upgrade}");
    assert_eq!(upgrade["sessions_cut"], 0, "{upgrade}");
    // The whole point: the gateway's connections to the pdf never closed.
    assert_eq!(upgrade["connections_closed"], 0, "{upgrade}");
    assert_eq!(upgrade["overcharged_accounts"], 0, "{upgrade}");
    assert_eq!(upgrade["undercharged_accounts"], 0, "{upgrade}");
    assert_stopped(&report);
}

#[test]
fn a_sweep_runs_each_strategy_on_the_same_seed_and_compares_them() {
    let dir = tempfile::Builder::new()
        .prefix("loadgen-sweep-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    // Refused before anything runs: a strategy that does not exist.
    let output = Command::new(LOADGEN)
        .args([
            "sweep",
            &scenario("upgrade-restart.toml"),
            "--strategies",
            "restart,blue-green",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run loadgen sweep");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--strategies: \"blue-green\" is not a strategy"),
        "{stderr}"
    );
    let output = Command::new(LOADGEN)
        .args(["sweep", &scenario("upgrade-restart.toml")])
        .args(["--strategies", "restart,drain"])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run loadgen sweep");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for strategy in ["restart", "drain"] {
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(strategy).join("summary.json"))
                .expect("summary.json"),
        )
        .expect("JSON");
        assert_eq!(summary["scenario"], format!("upgrade-restart-{strategy}"));
        assert_eq!(summary["seed"], 7);
        assert_eq!(
            summary["upgrade"]["strategies"],
            serde_json::json!([strategy])
        );
        assert_eq!(summary["books"]["mismatches"], 0, "{}", summary["books"]);
        assert_stopped(&summary);
    }
    let table = std::fs::read_to_string(dir.path().join("compare.txt")).expect("compare.txt");
    let line = |heading: &str| {
        table
            .lines()
            .find(|l| l.starts_with(heading))
            .unwrap_or_else(|| panic!("{heading} in\n{table}"))
            .split_whitespace()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
    };
    assert_eq!(line("upgrade"), ["drain", "restart"], "{table}");
    // The restart cuts sessions; the drain none.
    let cut = line("  sessions cut");
    assert_eq!(cut[0], "0", "{table}");
    assert!(cut[1].parse::<u64>().unwrap_or(0) > 0, "{table}");
    assert!(dir.path().join("compare.html").exists());
    assert!(stdout.contains("== sweep: upgrade-restart =="), "{stdout}");
}

#[test]
fn a_migrate_upgrade_moves_every_session_to_the_new_pdf_and_the_books_add_up() {
    // upgrade-migrate: at 3 s a second pdf starts owning nothing (its own journal, pdf0 as
    // its upstream), joins the gateway as pdf1; pdf0 moves its accounts and live sessions
    // there in batches, answers each moved session's next request with 3006 naming pdf1,
    // then exits 0 by itself. No session is cut, no request fails (no START refused), and
    // each account's debits on pdf0 (before the move) + pdf1 (after) equal its usage x
    // tariff exactly. The other scenarios run at the same time: the machine is busy.
    let run = runs().migrate.finish();
    let report = run.passed_report();
    let events = report["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{report}");
    assert_eq!(events[0]["outcome"], "ok", "{}", events[0]);
    assert_eq!(
        report["sessions"]["lost"],
        serde_json::json!({}),
        "no session cut by the infrastructure: {}",
        report["sessions"]
    );
    let books = &report["books"];
    assert_eq!(
        books["nodes"],
        serde_json::json!(["pdf0", "pdf1"]),
        "{books}"
    );
    assert_eq!(books["pdf_books_ok"], true, "{books}");
    assert_eq!(books["mismatches"], 0, "{books}");
    assert_eq!(books["accounts_uncertain"], 0, "{books}");
    assert_eq!(books["accounts_compared"], 3600, "{books}");
    let upgrade = &report["upgrade"];
    let migrate = &upgrade["upgrades"][0];
    assert_eq!(migrate["strategy"], "migrate", "{upgrade}");
    assert_eq!(migrate["ok"], true, "{upgrade}");
    assert_eq!(migrate["old_node"], "pdf0");
    assert_eq!(migrate["new_node"], "pdf1");
    assert_eq!(migrate["old_exit_status"], 0, "{upgrade}");
    assert!(
        migrate["detail"]
            .as_str()
            .is_some_and(|d| d.contains("3600 accounts")),
        "{upgrade}"
    );
    assert_eq!(upgrade["sessions_cut"], 0, "{upgrade}");
    assert_eq!(upgrade["overcharged_accounts"], 0, "{upgrade}");
    assert_eq!(upgrade["undercharged_accounts"], 0, "{upgrade}");
    // Moved accounts are not split brain: one pdf charged each at a time.
    assert_eq!(upgrade["split_brain"]["accounts_on_both"], 0, "{upgrade}");
    // Sessions moved: the gateway followed a 3006 for each (UPDATE and STOP answered), and
    // new sessions of accounts on the move were redirected, never refused.
    assert_eq!(report["failed_requests"], 0, "{report}");
    assert_eq!(upgrade["failed_requests"], 0, "{upgrade}");
    assert_eq!(report["sessions"]["refused"], 0, "{}", report["sessions"]);
    assert_stopped(&report);
}
