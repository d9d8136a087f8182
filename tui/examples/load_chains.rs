//! How long the chains view takes to get its rows from a real store: the
//! first page (what the view shows first) and every page (what scrolling to
//! the end needs), through the daemon's API or the store itself, then one
//! keystroke-to-frame (End) on the loaded rows. Used by `bench/tui_store.sh`.
//!
//! ```text
//! load_chains --data-dir D            through the daemon on D (daemon.json, token)
//! load_chains --data-dir D --local    opening D's store (no daemon)
//! ```

use std::path::PathBuf;
use std::time::Instant;

use intentproof_tui::app::{FIRST_PAGE, PAGE};
use intentproof_tui::{App, HttpSource, LocalSource, Source, settle};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut data_dir = None;
    let mut local = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--local" => local = true,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let dir = data_dir.ok_or("pass --data-dir")?;
    let started = Instant::now();
    let mut source: Box<dyn Source> = if local {
        Box::new(LocalSource::open(&dir)?)
    } else {
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("daemon.json"))?)?;
        let listen = info["listen"].as_str().ok_or("daemon.json has no listen")?;
        let token = std::fs::read_to_string(dir.join("token"))?;
        Box::new(HttpSource::new(
            &format!("http://{listen}"),
            token.trim().to_owned(),
            None,
        )?)
    };
    let opened = started.elapsed();
    let first = source.chains(0, FIRST_PAGE)?;
    let first_page = started.elapsed();
    let total = first.total;
    let mut rows = first.rows.len();
    while rows < total {
        let page = source.chains(rows, PAGE)?;
        if page.rows.is_empty() {
            break;
        }
        rows += page.rows.len();
    }
    let all_pages = started.elapsed();
    println!(
        "{}: {total} chains; open {:.1} ms, first page ({} rows) at {:.1} ms, all {rows} rows at {:.1} ms",
        source.label(),
        opened.as_secs_f64() * 1e3,
        FIRST_PAGE.min(total),
        first_page.as_secs_f64() * 1e3,
        all_pages.as_secs_f64() * 1e3
    );

    // The same path the terminal takes: the app loads every page, then End.
    let mut app = App::new(source.label(), std::env::temp_dir());
    let loading = Instant::now();
    settle(&mut app, source.as_mut());
    let loaded = loading.elapsed();
    let mut terminal = Terminal::new(TestBackend::new(160, 48))?;
    terminal.draw(|frame| intentproof_tui::ui::draw(frame, &mut app))?;
    let key = Instant::now();
    app.handle(&Event::Key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)));
    terminal.draw(|frame| intentproof_tui::ui::draw(frame, &mut app))?;
    println!(
        "app: loaded in {:.1} ms; End + frame (160x48) {:.2} ms",
        loaded.as_secs_f64() * 1e3,
        key.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
