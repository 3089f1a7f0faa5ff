//! `cargo xtask book`: the course as a web book, rendered by mdBook.
//!
//! The book's source is generated, never kept: `source` lays `course/` out under
//! `<target>/xtask/book/src/` with a `SUMMARY.md` in course order, and rewrites each lesson page
//! from the lesson model the runner grades with ([`crate::lesson`]), so the page shows what the
//! runner does: a box with the lesson's facts and its `start` and `lesson` commands, a label on
//! every step block saying what it checks, and each Done-when item with the steps that check it.
//! Every link between the course's pages is checked first (`links`); a broken one fails the
//! build, naming its file, line and target. Then `tool` runs the installed `mdbook build`
//! (installing it with `cargo install` when it is missing, so `cargo xtask lesson` never carries
//! mdBook's weight), and `--serve` serves the result on 127.0.0.1: with `mdbook serve` when the
//! installed build has it, else with the small static server of `serve`.

pub(crate) mod links;
mod page;
mod quiz_page;
mod serve;
mod source;
mod tool;

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// `cargo xtask book [--serve] [--port N] [--no-install] [--check]`.
#[derive(Debug, Clone, clap::Args)]
pub struct BookArgs {
    /// After building, serve the book on http://127.0.0.1:PORT for local reading, until Ctrl-C
    /// (`mdbook serve` when the installed mdBook has it, else a small static file server). The
    /// book is generated from course/: after editing a lesson, run the command again.
    #[arg(long)]
    serve: bool,
    /// The port `--serve` listens on, on 127.0.0.1.
    #[arg(long, default_value_t = 3000, requires = "serve")]
    port: u16,
    /// Fail with how to install mdBook instead of installing it when it is missing.
    #[arg(long)]
    no_install: bool,
    /// Only generate the book's source and check its links; do not run mdBook.
    #[arg(long, conflicts_with_all = ["serve", "no_install"])]
    check: bool,
}

/// Where the book is generated: its source and mdBook's output.
#[derive(Debug, Clone)]
pub(crate) struct BookDirs {
    /// The book's root, holding `book.toml`.
    pub(crate) root: PathBuf,
    /// The generated markdown (`src/`).
    pub(crate) src: PathBuf,
    /// mdBook's HTML output (`html/`).
    pub(crate) html: PathBuf,
}

impl BookDirs {
    /// The folders under the target folder.
    fn new(target: &std::path::Path) -> Self {
        let root = target.join("xtask/book");
        Self {
            src: root.join("src"),
            html: root.join("html"),
            root,
        }
    }
}

/// Runs `cargo xtask book`.
pub fn run(args: &BookArgs) -> anyhow::Result<ExitCode> {
    let workspace = crate::workspace_root();
    let dirs = BookDirs::new(&crate::target_dir(&workspace));
    let started = std::time::Instant::now();
    let generated = source::generate(&workspace, &dirs).context("generating the book's source")?;
    eprintln!(
        "book: {} pages ({} lessons), {} links between them checked, in {}",
        generated.pages,
        generated.lessons,
        generated.links,
        dirs.src.display()
    );
    if args.check {
        return Ok(ExitCode::SUCCESS);
    }
    let mdbook = tool::find_or_install(!args.no_install)?;
    tool::build(&mdbook, &dirs)?;
    eprintln!(
        "book: built in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        dirs.html.join("index.html").display()
    );
    if args.serve {
        if tool::has_serve(&mdbook) {
            tool::serve(&mdbook, &dirs, args.port)?;
        } else {
            eprintln!(
                "book: this mdBook has no `serve` (installed without it); serving the built \
                 files instead"
            );
            serve::serve_forever(&dirs.html, args.port)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
