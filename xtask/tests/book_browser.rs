//! `cargo xtask book` read in a real browser: the book is built, the W05 L04 page is opened in
//! headless Chromium, and what the browser shows (its DOM after the page's scripts ran) must have
//! the lesson's commands box, a label on every step block and navigation that leads to pages
//! that exist. A screenshot of the page is kept in the target folder
//! (`<target>/xtask/book/w05-l04.png`) for CI to keep as an artifact.
//!
//! The test needs Chromium (`/usr/bin/chromium`, Debian's package, or `CHROMIUM`) and an
//! installed mdBook (`cargo xtask book` installs it). Where one is missing it says so on stderr
//! and checks nothing, unless `XTASK_BOOK_BROWSER_TEST=required` (CI's book step sets it), where
//! a missing tool fails it.

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The page under test, under the book's root.
const PAGE: &str = "w05/04-io-cpu-handoff.html";

/// Whether a missing tool fails the test instead of skipping it.
fn required() -> bool {
    std::env::var("XTASK_BOOK_BROWSER_TEST").is_ok_and(|v| v == "required")
}

/// Reports a missing tool: a skip, or with [`required`] a failure.
fn missing(what: &str) {
    assert!(!required(), "{what}, and XTASK_BOOK_BROWSER_TEST=required");
    eprintln!("SKIPPED: the book's browser test: {what}");
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.is_file().then_some(path)
}

/// Whether mdBook is where `cargo xtask book` looks for it: on PATH or in cargo's bin folder.
fn mdbook_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin"));
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .any(|dir| dir.join("mdbook").is_file())
}

/// Headless Chromium on `url` with a fresh profile, with `args` added; its stdout.
fn browse(chromium: &Path, url: &str, args: &[String]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "xtask-chromium-{}-{}",
        std::process::id(),
        args.len()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every `href` value in `html`.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|href| href.replace("&amp;", "&"))
        .collect()
}

/// The `href` of the first `<a>` whose `rel` starts with `rel`.
fn rel_link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}"))?;
    let tag_end = at + html[at..].find('>')?;
    hrefs(&html[at..tag_end]).into_iter().next()
}

/// Whether a relative link of the page `page` (under `html`) leads to a file of the book.
fn resolves(html: &Path, page: &Path, href: &str) -> bool {
    let path = href.split(['#', '?']).next().unwrap_or("");
    if path.is_empty() {
        return true;
    }
    html.join(page.parent().unwrap()).join(path).is_file()
}

#[test]
fn the_w05_l04_page_shows_its_commands_its_step_labels_and_working_navigation() {
    let Some(chromium) = chromium() else {
        return missing("/usr/bin/chromium is not installed (Debian: apt-get install chromium)");
    };
    if !mdbook_installed() {
        return missing("mdbook is not installed (`cargo xtask book` installs it)");
    }
    let build = Command::cargo_bin("xtask")
        .expect("the xtask binary")
        .args(["book", "--no-install"])
        .timeout(Duration::from_secs(300))
        .output()
        .expect("run cargo xtask book");
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(build.status.success(), "{stderr}");
    assert!(stderr.contains("links between them checked"), "{stderr}");
    let index = stderr
        .lines()
        .find_map(|line| line.strip_prefix("book: built in "))
        .and_then(|rest| rest.split_once(": "))
        .map(|(_, path)| PathBuf::from(path.trim()))
        .expect("the book's index in the report");
    let html = index.parent().expect("the book's folder").to_path_buf();
    let page = html.join(PAGE);
    assert!(page.is_file(), "{}", page.display());
    let url = format!("file://{}", page.display());

    let dom = browse(&chromium, &url, &["--dump-dom".to_owned()]);
    // The commands box.
    let facts = dom.find("class=\"xtask-lesson\"").expect("the lesson box");
    // The box ends after its commands (mdBook's script adds a copy button inside it).
    let box_end = facts + dom[facts..].find("</pre>").expect("the box's commands");
    let lesson_box = &dom[facts..box_end];
    assert!(
        lesson_box.contains("cargo xtask start w05-l04"),
        "{lesson_box}"
    );
    assert!(
        lesson_box.contains("cargo xtask lesson w05-l04"),
        "{lesson_box}"
    );
    // A label on every step block of the lesson file, in each of the three sections.
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../course/w05/04-io-cpu-handoff.md"),
    )
    .unwrap();
    let kinds = [
        "run", "server", "client", "wait", "signal", "trace", "prove",
    ];
    let steps = source
        .lines()
        .filter(|line| {
            line.strip_prefix("```console ")
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|kind| kinds.contains(&kind))
        })
        .count();
    assert!(steps >= 10, "{steps}");
    assert_eq!(
        dom.matches("class=\"xtask-step\"").count(),
        steps,
        "one label per step block"
    );
    assert_eq!(dom.matches("what the runner checks").count(), steps);
    for section in ["Test", "Expected", "Prove"] {
        assert!(
            dom.contains(&format!("<span class=\"xtask-section\">{section}</span>")),
            "no step labelled {section}"
        );
    }
    // Navigation: the previous and next lessons, and every page of the sidebar, exist.
    let page_rel = Path::new(PAGE);
    let prev = rel_link(&dom, "prev").expect("a link to the previous page");
    let next = rel_link(&dom, "next").expect("a link to the next page");
    assert!(
        prev.ends_with("w05/03-cancellation-shutdown.html"),
        "{prev}"
    );
    assert!(next.ends_with("w05/05-error-propagation.html"), "{next}");
    for link in [&prev, &next] {
        assert!(resolves(&html, page_rel, link), "{link} leads nowhere");
    }
    let sidebar_start = dom.find("<mdbook-sidebar-scrollbox").expect("the sidebar");
    let sidebar_end = sidebar_start
        + dom[sidebar_start..]
            .find("</mdbook-sidebar-scrollbox>")
            .expect("the sidebar's end");
    let sidebar: Vec<String> = hrefs(&dom[sidebar_start..sidebar_end])
        .into_iter()
        .filter(|href| href.ends_with(".html"))
        .collect();
    assert!(sidebar.len() >= 30, "{sidebar:?}");
    for link in &sidebar {
        assert!(
            resolves(&html, page_rel, link),
            "sidebar link {link} leads nowhere"
        );
    }

    // The screenshot, tall enough to show the box and the step labels, kept for CI.
    let shot = html.parent().unwrap().join("w05-l04.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &chromium,
        &url,
        &[
            "--window-size=1280,6000".to_owned(),
            format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[16..24], [0, 0, 5, 0, 0, 0, 0x17, 0x70], "1280 × 6000");
    eprintln!("screenshot: {}", shot.display());
}
