//! The real `loadgen` binary runs the shipped CI scenario end to end (it starts the real
//! `pdf` and `gateway` from its own directory), and refuses broken scenarios clearly.

use std::process::Command;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

fn scenario(name: &str) -> String {
    format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn ci_smoke_passes_its_thresholds_and_the_books_balance() {
    let dir = std::path::Path::new(LOADGEN).parent().expect("target dir");
    for binary in ["pdf", "gateway"] {
        assert!(
            dir.join(binary).exists(),
            "{binary} is not built beside the loadgen: run cargo build --workspace"
        );
    }
    let out = tempfile::tempdir().expect("tempdir");
    let output = Command::new(LOADGEN)
        .args([
            "run",
            &scenario("ci-smoke.toml"),
            "--out",
            &out.path().display().to_string(),
        ])
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("RESULT: pass"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("summary.json")).expect("summary.json"),
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
    assert!(
        stderr.contains("req/s"),
        "progress lines on stderr: {stderr}"
    );

    // The HTML report beside summary.json, and `loadgen compare` on the same run (twice).
    let page = std::fs::read_to_string(out.path().join("report.html")).expect("report.html");
    assert!(page.contains("<svg"), "report.html has no plot");
    assert!(page.contains("ci-smoke") && page.contains("Thresholds"));
    let summary = out.path().join("summary.json").display().to_string();
    let output = Command::new(LOADGEN)
        .args(["compare", &summary, &summary, "--out"])
        .arg(out.path())
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
    let page = std::fs::read_to_string(out.path().join("compare.html")).expect("compare.html");
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
    ];
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
