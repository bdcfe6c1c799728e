//! The run's report (`report.html`): written into every published run, rendered again by
//! `segflow report` byte for byte from the published files, refused clearly for runs that
//! cannot be read, and opened in a real headless Chromium with the network blocked.

mod common;

use std::path::{Path, PathBuf};

use common::{Project, published, published_run};

const PIPELINE: &str = "pipelines/customer_segments.yaml";
const OUTPUT: &str = "out/customer_segments";

fn manifest(version: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(version.join("_MANIFEST.json")).unwrap()).unwrap()
}

/// The report's structure, for snapshots: headings, the facts of the headline, every
/// chart's id, title and how many shapes it draws, every table's caption, header and row
/// count, and the rows of the tables whose content is the data's (not times or paths).
/// Times, durations, versions, hashes and attempt ids are filtered.
fn outline(html: &str) -> String {
    const CONTENT_TABLES: [&str; 6] = [
        "Segments, largest first",
        "What each segment's customers are like",
        "Checks",
        "Rows set aside, per reason",
        "Rows from each source to the segments",
        "The segment input, per feature",
    ];
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        let tag: String = rest[1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        match tag.as_str() {
            "h1" | "h2" | "h3" => {
                let text = inner(rest, &tag);
                out.push_str(&format!("{tag} {}\n", strip_tags(&text)));
            }
            "dl" => {
                let list = inner(rest, "dl");
                let terms: Vec<String> = list
                    .split("<div>")
                    .skip(1)
                    .map(|fact| {
                        let term = strip_tags(&inner(fact, "dt"));
                        let value = match term.as_str() {
                            "Started" | "Duration" => "<filtered>".to_string(),
                            _ => strip_tags(&inner(fact, "dd")),
                        };
                        format!("{term}: {value}")
                    })
                    .collect();
                out.push_str(&format!("  facts: {}\n", terms.join(" | ")));
            }
            "svg" => {
                let element = inner(rest, "svg");
                let id = attribute(rest, "id");
                let shapes = ["<rect", "<circle", "<polyline", "<line "]
                    .map(|shape| format!("{}{}", &shape[1..], element.matches(shape).count()));
                let title = strip_tags(&inner(&element, "title"));
                out.push_str(&format!("  svg #{id} \"{title}\": {}\n", shapes.join(" ")));
            }
            "table" => {
                let table = inner(rest, "table");
                let caption = strip_tags(&inner(&table, "caption"));
                let head = inner(&table, "thead");
                let header: Vec<String> = head
                    .split("<th scope")
                    .skip(1)
                    .map(|cell| strip_tags(&format!("<th scope{cell}")).trim().to_string())
                    .collect();
                let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
                out.push_str(&format!(
                    "  table \"{caption}\" [{}]: {} rows\n",
                    header.join(" | "),
                    rows.len()
                ));
                if CONTENT_TABLES.contains(&caption.as_str()) {
                    // Which failing rows a check samples depends on the order parallel
                    // scans finish in: counted, not listed.
                    let samples = header.iter().position(|cell| cell == "sample keys");
                    for row in rows {
                        let mut cells: Vec<String> = row
                            .split("<td")
                            .skip(1)
                            .map(|cell| strip_tags(&format!("<td{cell}")).trim().to_string())
                            .collect();
                        if let Some(at) = samples {
                            let keys = cells[at].matches("invoice_no=").count();
                            cells[at] = format!("<{keys} samples>");
                        }
                        out.push_str(&format!("    {}\n", cells.join(" | ")));
                    }
                }
                rest = &rest[table.len()..];
            }
            _ => {}
        }
        rest = &rest[1..];
    }
    out
}

/// The text between `<tag ...>` at the start of `html` and its `</tag>`.
fn inner(html: &str, tag: &str) -> String {
    let Some(open) = html.find(&format!("<{tag}")) else {
        return String::new();
    };
    let after = &html[open..];
    let Some(body) = after.find('>') else {
        return String::new();
    };
    let close = after.find(&format!("</{tag}>")).unwrap_or(after.len());
    after[body + 1..close.max(body + 1)].to_string()
}

fn attribute(html: &str, name: &str) -> String {
    let tag_end = html.find('>').unwrap_or(html.len());
    let tag = &html[..tag_end];
    tag.split(&format!(" {name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_run_publishes_its_report_and_segflow_report_renders_the_same_page() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(0);
    let output = project.path(OUTPUT);
    let version = published(&output);
    // The summary ends with the page's address.
    let line = run
        .stdout
        .lines()
        .find(|line| line.starts_with("report  file://"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.ends_with("/report.html"), "{line}");
    let listed: Vec<String> = manifest(&version)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap().to_string())
        .collect();
    for name in ["report.html", "run.json"] {
        assert!(
            listed
                .iter()
                .any(|path| path.ends_with(&format!("/{name}"))),
            "{name} is listed in the manifest: {listed:?}"
        );
    }
    let page = std::fs::read_to_string(version.join("report.html")).unwrap();
    assert!(page.len() < 2_000_000, "the page is {} bytes", page.len());
    // Self-contained: nothing to fetch, nothing to run.
    for outside in [
        "<script", "<link", "<img", " src=", "url(", "@import", "https://",
    ] {
        assert!(!page.contains(outside), "the page holds {outside}");
    }
    assert_eq!(
        page.matches("http://").count(),
        page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "the only http:// is SVG's namespace"
    );
    // The run's account is the run report as of publishing, secrets masked.
    let account: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(version.join("run.json")).unwrap()).unwrap();
    assert_eq!(account["status"], "success");
    assert_eq!(account["run_id"], "2011-12-10");

    // From the pipeline (the latest run), from the run's folder, and from the output
    // folder with --run-id: the same bytes as the run wrote.
    let again = project.segflow(&["report", PIPELINE, "-o", "again.html"]);
    again.assert_exit(0);
    assert!(again.stdout.contains("again.html"), "{}", again.stdout);
    assert_eq!(
        std::fs::read_to_string(project.path("again.html")).unwrap(),
        page
    );
    let from_folder =
        project.segflow(&["report", &format!("{OUTPUT}/run_id=2011-12-10/"), "-o", "-"]);
    from_folder.assert_exit(0);
    assert!(from_folder.stdout == page, "the page on stdout differs");
    project
        .segflow(&["report", OUTPUT, "--run-id", "2011-12-10"])
        .assert_exit(0);
    assert_eq!(
        std::fs::read_to_string(project.path("report-2011-12-10.html")).unwrap(),
        page
    );
    insta::assert_snapshot!("example_report", outline(&page));
}

/// The example as a season of runs: calibrated on the first half of 2011 with k chosen
/// from a range and the value model judged on the 26 weeks after; then rerun on the whole
/// year, warm-started from it (its k), so customers' moves are counted.
fn warm_started_season(project: &Project) -> (PathBuf, PathBuf) {
    project.calibrate_with_holdout("2011-06-11");
    project.replace_in(PIPELINE, "  k: 5\n", "  k: { min: 3, max: 6 }\n");
    project.replace_in(
        PIPELINE,
        "  carry: [",
        "  actions:\n    Champions: Invite to the VIP evening.\n  carry: [",
    );
    project
        .segflow(&["run", PIPELINE, "--report-json", "first.json"])
        .assert_exit(0);
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("first.json")).unwrap())
            .unwrap();
    let k = first["segment"]["k"].as_u64().unwrap();
    project.replace_in(
        PIPELINE,
        "  k: { min: 3, max: 6 }\n",
        &format!("  k: {k}\n  warm_start: previous\n"),
    );
    project.replace_in(
        PIPELINE,
        "  evaluate: { actual_purchases: holdout_purchases, period: 26 weeks }\n",
        "",
    );
    project
        .segflow(&["run", PIPELINE, "--var", "as_of=2011-12-10"])
        .assert_exit(0);
    let output = project.path(OUTPUT);
    (
        published_run(&output, "2011-06-11"),
        published_run(&output, "2011-12-10"),
    )
}

#[test]
fn a_k_range_a_warm_start_and_a_value_stage_each_get_their_charts() {
    let project = Project::copy_of_repository();
    let (first, rerun) = warm_started_season(&project);
    let first_page = std::fs::read_to_string(first.join("report.html")).unwrap();
    let rerun_page = std::fs::read_to_string(rerun.join("report.html")).unwrap();
    for id in [
        "chart-k-inertia",
        "chart-k-silhouette",
        "chart-evaluation",
        "chart-ltv",
        "chart-clv",
    ] {
        assert!(
            first_page.contains(&format!("id=\"{id}\"")),
            "the first run has #{id}"
        );
    }
    assert!(rerun_page.contains("id=\"chart-migration\""));
    assert!(!rerun_page.contains("id=\"chart-k-inertia\""));
    assert!(first_page.contains("Invite to the VIP evening."));
    // Both render again the same from their published files.
    for (run_id, page) in [("2011-06-11", &first_page), ("2011-12-10", &rerun_page)] {
        let again = project.segflow(&["report", PIPELINE, "--run-id", run_id, "-o", "-"]);
        again.assert_exit(0);
        assert!(again.stdout == *page, "run {run_id} renders the same");
    }
    insta::assert_snapshot!("k_range_and_evaluation_report", outline(&first_page));
    insta::assert_snapshot!("warm_started_rerun_report", outline(&rerun_page));
}

#[test]
fn a_failed_run_leaves_no_report() {
    let project = Project::copy_of_repository();
    project.replace_in(PIPELINE, "        min: 1000\n", "        min: 1000000\n");
    project.segflow(&["run", PIPELINE]).assert_exit(4);
    let left: Vec<String> = files_under(&project.path(OUTPUT))
        .into_iter()
        .filter(|file| file.ends_with("report.html") || file.ends_with("run.json"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn runs_that_cannot_be_read_are_refused_in_one_line_and_nothing_is_written() {
    let project = Project::copy_of_repository();
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    let output = project.path(OUTPUT);
    let version = published(&output);

    // A run id with no commit (an attempt that never published).
    std::fs::create_dir_all(output.join("run_id=2011-01-01/attempt=x")).unwrap();
    let refused = project.segflow(&["report", PIPELINE, "--run-id", "2011-01-01", "-o", "x.html"]);
    refused.assert_exit(3);
    assert!(
        refused.stderr.trim().lines().count() == 1
            && refused.stderr.contains("run `2011-01-01` is not published")
            && refused.stderr.contains("_SUCCESS"),
        "{}",
        refused.stderr
    );
    assert!(!project.path("x.html").exists());

    // An output folder with nothing published.
    std::fs::create_dir_all(project.path("out/empty")).unwrap();
    let empty = project.segflow(&["report", "out/empty", "-o", "x.html"]);
    empty.assert_exit(3);
    assert!(
        empty.stderr.contains("no run is published in"),
        "{}",
        empty.stderr
    );

    // A manifest written by a newer segflow.
    let manifest_path = version.join("_MANIFEST.json");
    let original = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        original.replacen("\"schema_version\": 4", "\"schema_version\": 99", 1),
    )
    .unwrap();
    let newer = project.segflow(&["report", PIPELINE, "-o", "x.html"]);
    newer.assert_exit(1);
    assert!(
        newer.stderr.contains("run `2011-12-10`")
            && newer.stderr.contains("manifest schema 99")
            && newer.stderr.trim().lines().count() == 1,
        "{}",
        newer.stderr
    );
    std::fs::write(&manifest_path, original).unwrap();

    // A table file gone.
    let profile = common::table_files(&version, "profile");
    std::fs::remove_file(&profile[0]).unwrap();
    let missing = project.segflow(&["report", PIPELINE, "-o", "x.html"]);
    missing.assert_exit(1);
    assert!(
        missing
            .stderr
            .contains("run `2011-12-10`: table `profile` is missing")
            && missing.stderr.trim().lines().count() == 1,
        "{}",
        missing.stderr
    );
    assert!(!project.path("x.html").exists());

    // A run folder and --run-id that disagree.
    let disagree = project.segflow(&[
        "report",
        &format!("{OUTPUT}/run_id=2011-12-10"),
        "--run-id",
        "2011-06-11",
    ]);
    disagree.assert_exit(2);
}

/// Chromium for the browser test: `SEGFLOW_CHROMIUM`, or Debian's package.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("SEGFLOW_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("SEGFLOW_REQUIRE_BROWSER").is_none(),
        "SEGFLOW_REQUIRE_BROWSER is set but {} does not exist (apt-get install chromium)",
        path.display()
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "skipped: no Chromium at {} (apt-get install chromium)",
            path.display()
        );
    }
    None
}

#[test]
fn the_report_renders_in_headless_chromium_with_the_network_blocked() {
    if !common::python_has("playwright", "SEGFLOW_REQUIRE_BROWSER")
        || !common::python_has("PIL", "SEGFLOW_REQUIRE_BROWSER")
    {
        return;
    }
    let Some(chromium) = chromium() else {
        return;
    };
    let project = Project::copy_of_repository();
    let (first, rerun) = warm_started_season(&project);
    let pages: Vec<(PathBuf, &str)> = vec![
        (first.join("report.html"), "k_range_and_evaluation"),
        (rerun.join("report.html"), "warm_started_rerun"),
    ];
    // Kept after the test: the screenshots are its artifacts.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut args = vec![chromium.display().to_string(), shots.display().to_string()];
    for (page, name) in &pages {
        let copy = project.path(&format!("{name}.html"));
        std::fs::copy(page, &copy).unwrap();
        args.push(copy.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let results = common::python_json(
        &project.path(""),
        include_str!("browser/check_report.py"),
        &args,
    );
    for (page, name) in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        let copy = project.path(&format!("{name}.html")).display().to_string();
        let result = &results[&copy];
        let context = serde_json::to_string_pretty(result).unwrap();
        assert_eq!(
            result["blocked"],
            serde_json::json!([]),
            "{name}: {context}"
        );
        assert_eq!(result["failed"], serde_json::json!([]), "{name}: {context}");
        assert_eq!(
            result["console"],
            serde_json::json!([]),
            "{name}: {context}"
        );
        assert_eq!(result["errors"], serde_json::json!([]), "{name}: {context}");
        assert_eq!(result["external_elements"], 0, "{name}");
        let height = result["height"].as_f64().unwrap();
        assert!(
            (3000.0..60000.0).contains(&height),
            "{name}: {height} px high"
        );
        assert!(
            result["width"].as_f64().unwrap() <= 1280.0,
            "{name}: no sideways scrolling"
        );
        assert!(
            result["not_white"].as_f64().unwrap() > 0.05,
            "{name}: blank? {context}"
        );
        assert!(
            result["colours"].as_u64().unwrap() > 20,
            "{name}: {context}"
        );
        // Every chart in the page rendered, with a size and shapes in it.
        let charts = html.matches("<svg ").count();
        let svgs = result["svgs"].as_array().unwrap();
        assert_eq!(svgs.len(), charts, "{name}");
        for svg in svgs {
            assert!(
                svg["width"].as_f64().unwrap() > 100.0
                    && svg["height"].as_f64().unwrap() > 50.0
                    && svg["shapes"].as_u64().unwrap() > 0
                    && svg["title"].is_string(),
                "{name}: {svg}"
            );
        }
        #[allow(clippy::print_stderr)]
        {
            eprintln!("screenshot of {name}: {}", result["screenshot"]);
        }
    }
}
