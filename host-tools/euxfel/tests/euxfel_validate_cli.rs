//! The real xfel-validate on fixture runs: `--shard`/`--merge` results that do not
//! make up one run, output that cannot be written, `--json` for several directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fixtures::euxfel::{make_run, Format, RunSpec};

const VALIDATE: &str = env!("CARGO_BIN_EXE_xfel-validate");

/// Run xfel-validate in `cwd`; (exit code, stdout, stderr). The children do not
/// lock HDF5 files (other tests of this process write fixtures meanwhile).
fn validate_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(VALIDATE)
        .args(args)
        .current_dir(cwd)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("spawn");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A run of 2 sequences of 2 modules and the control files: 6 files.
fn fixture(dir: &Path) {
    let spec = RunSpec {
        format: Format::V1_3,
        trains_per_sequence: 5,
        sequences: 2,
        modules: 2,
        frames: 1,
        frame_height: 2,
        frame_width: 3,
        ..RunSpec::default()
    };
    make_run(dir, &spec).expect("fixture");
}

/// `--shard i/n --json` of `run` (relative to `cwd`) for each `i`, written to
/// `<out>/<tag><i>.json`; the paths.
fn shards(cwd: &Path, run: &str, n: usize, extra: &[&str], out: &Path, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let shard = format!("{i}/{n}");
            let mut args = vec![run, "--shard", &shard, "--json"];
            args.extend(extra);
            let (code, json, err) = validate_in(cwd, &args);
            assert!(code == 0 || code == 1, "{err}");
            let p = out.join(format!("{tag}{i}.json"));
            std::fs::write(&p, json).expect("write shard");
            p.to_str().expect("utf8").to_string()
        })
        .collect()
}

fn merge(cwd: &Path, results: &[String], extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["--merge"];
    args.extend(results.iter().map(String::as_str));
    args.extend(extra);
    validate_in(cwd, &args)
}

/// Shards of different runs, option sets or file lists, and results that are not
/// shards, are refused with a message naming the reason: never merged into a
/// report of a run that was not checked, and never a panic.
#[test]
fn merge_refuses_results_that_are_not_one_run() {
    let td = tempfile::tempdir().expect("tempdir");
    let (a, b) = (td.path().join("a"), td.path().join("b"));
    fixture(&a.join("r0450"));
    fixture(&b.join("r0450"));
    let out = td.path().join("results");
    std::fs::create_dir(&out).expect("mkdir");

    // More shards than files: the empty ones merge too, into the unsharded report.
    let (code, full, err) = validate_in(&a, &["r0450"]);
    assert_eq!(code, 0, "{err}");
    let many = shards(&a, "r0450", 9, &[], &out, "many");
    assert_eq!(merge(&a, &many, &[]), (0, full, String::new()));

    let refused = |results: &[String], extra: &[&str], why: &str| {
        let (code, merged, err) = merge(&a, results, extra);
        assert_eq!((code, merged.as_str()), (1, ""), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // Different --skip in the shards, or in the merge.
    let plain = shards(&a, "r0450", 2, &[], &out, "plain");
    let skip = shards(&a, "r0450", 2, &["--skip", "index_control"], &out, "skip");
    refused(
        &[plain[0].clone(), skip[1].clone()],
        &[],
        "use the same --skip for every shard",
    );
    refused(
        &skip,
        &["--skip", "sequence_gaps"],
        "not [sequence_gaps] as --skip asks",
    );
    let (code, _, err) = merge(&a, &skip, &["--skip", "index_control"]);
    assert_eq!(code, 0, "{err}");

    // The same relative path, another run (another working directory).
    let other = shards(&b, "r0450", 2, &[], &out, "other");
    refused(
        &[plain[0].clone(), other[1].clone()],
        &[],
        "(the shards of one run directory only)",
    );
    // A file added between the shards.
    let grown = a.join("r0450/RAW-R0450-DA09-S00000.h5");
    std::fs::copy(a.join("r0450/RAW-R0450-DA01-S00000.h5"), &grown).expect("copy");
    let late = shards(&a, "r0450", 2, &[], &out, "late");
    std::fs::remove_file(&grown).expect("rm");
    refused(
        &[plain[0].clone(), late[1].clone()],
        &[],
        "changed between the shards",
    );

    // The run directory gone (or not mounted where the merge runs): the run map
    // checks cannot run, so no report; without those checks the merge works.
    let map_skips = ["--skip", "run_json_cache", "--skip", "run_map_entries"];
    let no_map = shards(&a, "r0450", 2, &map_skips, &out, "nomap");
    std::fs::rename(a.join("r0450"), a.join("moved")).expect("mv");
    refused(&plain, &[], "r0450 is not here: the run map checks read it");
    let (code, _, err) = merge(&a, &no_map, &[]);
    assert_eq!(code, 0, "{err}");
    std::fs::rename(a.join("moved"), a.join("r0450")).expect("mv");

    // Edited or cut results: a shard index out of range, zero shards, cut JSON.
    let text = std::fs::read_to_string(&plain[1]).expect("read");
    let edit = |name: &str, from: &str, to: &str| {
        assert!(text.contains(from), "{text}");
        let p = out.join(name);
        std::fs::write(&p, text.replace(from, to)).expect("write");
        p.to_str().expect("utf8").to_string()
    };
    let past = edit(
        "past.json",
        r#""shard":{"index":1,"count":2}"#,
        r#""shard":{"index":7,"count":2}"#,
    );
    refused(&[plain[0].clone(), past], &[], "shard 7/2 does not fit");
    let zero = edit(
        "zero.json",
        r#""shard":{"index":1,"count":2}"#,
        r#""shard":{"index":0,"count":0}"#,
    );
    refused(&[zero], &[], "shard 0/0 does not fit");
    // A count no run has (2^60 shards): one missing shard, not 2^60 bytes of memory.
    let huge = edit(
        "huge.json",
        r#""shard":{"index":1,"count":2}"#,
        r#""shard":{"index":1,"count":1152921504606846976}"#,
    );
    refused(
        &[huge],
        &[],
        "the results of shard 0/1152921504606846976 are missing",
    );
    let cut = out.join("cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).expect("write");
    let cut = cut.to_str().expect("utf8").to_string();
    refused(
        &[plain[0].clone(), cut.clone()],
        &[],
        &format!("{cut}: not the --json result of an xfel-validate shard"),
    );

    // An empty result: a shard killed at its time limit before its report.
    let empty = out.join("empty.json");
    std::fs::write(&empty, "").expect("write");
    let empty = empty.to_str().expect("utf8").to_string();
    refused(
        &[plain[0].clone(), empty.clone()],
        &[],
        &format!("{empty}: empty: its shard did not finish"),
    );

    // The result of a single file.
    let (_, one, _) = validate_in(&a, &["r0450/RAW-R0450-DA01-S00000.h5", "--json"]);
    let one_p = out.join("one.json");
    std::fs::write(&one_p, one).expect("write");
    refused(
        &[one_p.to_str().expect("utf8").to_string()],
        &[],
        "are of a file, not of a run directory's shard",
    );
}

/// `--shard` takes one run directory: a file (or a missing path) and the two
/// directories of `--data all` are refused instead of checked whole.
#[test]
fn shard_of_a_file_or_of_two_directories_is_refused() {
    let td = tempfile::tempdir().expect("tempdir");
    let prop = td.path().join("exp/FXE/202601/p900123");
    fixture(&prop.join("raw/r0450"));
    fixture(&prop.join("proc/r0450"));
    let file = prop.join("raw/r0450/RAW-R0450-DA01-S00000.h5");
    let file = file.to_str().expect("utf8");
    let (code, out, err) = validate_in(td.path(), &[file, "--shard", "0/2"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(&format!("--shard takes a run directory: {file} is not one")),
        "{err}"
    );
    let lookup = [
        "--proposal",
        "900123",
        "--run",
        "450",
        "--data-root",
        "exp",
        "--data",
        "all",
    ];
    let (code, out, err) = validate_in(td.path(), &[&lookup[..], &["--shard", "0/2"]].concat());
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("--shard takes one run directory, not 2"),
        "{err}"
    );

    // --json for raw and proc: one document, with every report.
    let (code, out, err) = validate_in(td.path(), &[&lookup[..], &["--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["ok"], true);
    let paths: Vec<PathBuf> = doc["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| PathBuf::from(r["path"].as_str().expect("path")))
        .collect();
    assert_eq!(
        paths,
        [
            PathBuf::from("exp/FXE/202601/p900123/raw/r0450"),
            PathBuf::from("exp/FXE/202601/p900123/proc/r0450")
        ]
    );
}

/// A report that cannot be written (a full disk, a reader that left) ends with
/// exit 1 and, for a full disk, a message; never a panic or exit 0.
#[test]
fn unwritable_output_is_an_error_not_a_panic() {
    let td = tempfile::tempdir().expect("tempdir");
    fixture(&td.path().join("r0450"));
    for json in [false, true] {
        let mut args = vec!["r0450"];
        if json {
            args.push("--json");
        }
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let o = Command::new(VALIDATE)
            .args(&args)
            .current_dir(td.path())
            .stdout(full)
            .output()
            .expect("spawn");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("cannot write the report: No space left on device"),
            "{err}"
        );

        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = Command::new(VALIDATE)
            .args(&args)
            .current_dir(td.path())
            .stdout(Stdio::from(writer))
            .output()
            .expect("spawn");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!((o.status.code(), err.as_ref()), (Some(1), ""));
    }
}

/// A file whose name is not UTF-8 is checked like any other (it was reported
/// missing, then unreadable by libhdf5), and `--json` still writes the report.
#[test]
fn file_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;

    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("r0450");
    fixture(&run);
    let odd = run.join(std::ffi::OsStr::from_bytes(
        b"RAW-R0450-DA01-S00001-\xff.h5",
    ));
    std::fs::rename(run.join("RAW-R0450-DA01-S00001.h5"), &odd).expect("rename");
    let (code, out, err) = validate_in(td.path(), &["r0450"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.ends_with("\nNo problems found\n"), "{out}");
    let (code, out, err) = validate_in(td.path(), &["r0450", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["ok"], true);
    assert!(
        out.contains("RAW-R0450-DA01-S00001-\u{fffd}.h5"),
        "the name with U+FFFD: {out}"
    );
    let o = Command::new(VALIDATE)
        .arg(&odd)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("spawn");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.ends_with("\nNo problems found\n"), "{out}");

    // Its dCache pseudo-file is found under the same bytes.
    let pseudo = b".(get)(RAW-R0450-DA01-S00001-\xff.h5)(locality)";
    std::fs::write(run.join(std::ffi::OsStr::from_bytes(pseudo)), "NEARLINE\n").expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_xfel-locality"))
        .arg(&odd)
        .output()
        .expect("spawn");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

/// With `--json`, a failure without a report is still one document on stdout
/// (`{"ok": false, "error": ...}`), and `--merge` says why a shard failed.
#[test]
fn json_on_failure_paths() {
    let td = tempfile::tempdir().expect("tempdir");
    fixture(&td.path().join("r0450"));
    let doc = |args: &[&str], code: i32, error: &str| {
        let (c, out, err) = validate_in(td.path(), args);
        assert_eq!(c, code, "{args:?}: {out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        assert_eq!(
            v,
            serde_json::json!({"ok": false, "error": error}),
            "{args:?}"
        );
        assert!(err.contains(error), "{err}");
        out
    };
    doc(
        &[
            "--proposal",
            "9",
            "--run",
            "1",
            "--data-root",
            "exp",
            "--json",
        ],
        1,
        "couldn't find proposal dir for \"p000009\" under exp",
    );
    doc(
        &["r0450", "--skip", "nope", "--json"],
        1,
        "Unknown names passed to --skip: nope",
    );
    let failed = doc(
        &["r0450/missing", "--shard", "0/2", "--json"],
        1,
        "--shard takes a run directory: r0450/missing is not one",
    );
    std::fs::write(td.path().join("failed.json"), failed).expect("write");
    let (code, ok, _) = validate_in(td.path(), &["r0450", "--shard", "1/2", "--json"]);
    assert_eq!(code, 0);
    std::fs::write(td.path().join("ok.json"), ok).expect("write");
    let (code, out, err) = validate_in(td.path(), &["--merge", "ok.json", "failed.json"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains("failed.json: the shard failed: --shard takes a run directory"),
        "{err}"
    );
}

/// `--data-root` wins over `$EXTRA_DATA_DATA_ROOT`, which wins over the default;
/// an empty one is the working directory, as for EXtra-data.
#[test]
fn data_root_option_environment_and_empty() {
    let td = tempfile::tempdir().expect("tempdir");
    fixture(&td.path().join("FXE/202601/p900123/raw/r0450"));
    let with_env = |env: &str, args: &[&str]| {
        let o = Command::new(VALIDATE)
            .args(["--proposal", "900123", "--run", "450"])
            .args(args)
            .current_dir(td.path())
            .env("EXTRA_DATA_DATA_ROOT", env)
            .env("HDF5_USE_FILE_LOCKING", "FALSE")
            .output()
            .expect("spawn");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let root = td.path().to_str().expect("utf8");
    let found = |(code, out, err): (Option<i32>, String, String)| {
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.ends_with("No problems found\n"), "{out}");
    };
    found(with_env("/nonexistent-root", &["--data-root", root]));
    found(with_env(root, &[]));
    found(with_env("", &[]));
    let (code, _, err) = with_env(root, &["--data-root", "/nonexistent-root"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("couldn't find proposal dir for \"p900123\" under /nonexistent-root"),
        "{err}"
    );
}

/// A run map cut short (or a directory in its place) is never used by the
/// readers: `run_map_entries` says so instead of "No problems found".
#[test]
fn unreadable_run_map_is_a_problem() {
    let td = tempfile::tempdir().expect("tempdir");
    let run = td.path().join("r0450");
    fixture(&run);
    let map = run.join("karabo_data_map.json");
    // A good map (lsxfel writes one) is no problem.
    let lsxfel = Command::new(env!("CARGO_BIN_EXE_lsxfel"))
        .arg(&run)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .expect("lsxfel");
    assert!(lsxfel.status.success());
    let good = std::fs::read(&map).expect("lsxfel wrote the run map");
    let (code, out, err) = validate_in(td.path(), &["r0450"]);
    assert_eq!(code, 0, "{out}{err}");

    std::fs::write(&map, &good[..good.len() / 2]).expect("cut");
    let (code, out, _) = validate_in(td.path(), &["r0450", "--json"]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let problems = doc["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{out}");
    assert_eq!(problems[0]["check"], "run_map_entries");
    assert_eq!(problems[0]["msg"], "Data map cache file cannot be read");
    assert_eq!(problems[0]["cache_file"], "r0450/karabo_data_map.json");
    let (code, _, _) = validate_in(td.path(), &["r0450", "--skip", "run_map_entries"]);
    assert_eq!(code, 0);

    std::fs::remove_file(&map).expect("rm");
    std::fs::create_dir(&map).expect("mkdir");
    let (code, out, _) = validate_in(td.path(), &["r0450"]);
    assert_eq!(code, 1);
    assert!(out.contains("Data map cache file cannot be read\n  cache_file: r0450/karabo_data_map.json\n  error: Is a directory"), "{out}");
}
