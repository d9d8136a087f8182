//! The terminal loop: raw mode and the alternate screen (restored on
//! return, on error and on panic), a worker thread that owns the
//! [`Source`], and a timer for live updates.

use std::io::{self, Stdout};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

use crate::app::App;
use crate::source::{Reply, Request, Source, serve};

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `e` writes bundles.
    pub export_dir: PathBuf,
    /// How often new events and flags are fetched.
    pub poll_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            export_dir: PathBuf::from("."),
            poll_every: Duration::from_secs(2),
        }
    }
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, DisableMouseCapture);
    let _ = execute!(io::stdout(), ratatui::crossterm::cursor::Show);
}

/// Restores the terminal when dropped (normal return and error paths).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Runs the UI on the process's terminal until `q`.
pub fn run(source: Box<dyn Source>, options: Options) -> io::Result<()> {
    let label = source.label();
    let (to_worker, requests) = mpsc::channel::<Request>();
    let (replies_tx, replies) = mpsc::channel::<Reply>();
    let worker = std::thread::Builder::new()
        .name("intentproof-tui-source".into())
        .spawn(move || {
            let mut source = source;
            for request in requests {
                if replies_tx.send(serve(source.as_mut(), request)).is_err() {
                    break;
                }
            }
        })?;

    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    enable_raw_mode()?;
    let _restore = Restore;
    execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;

    let mut app = App::new(label, options.export_dir);
    let outcome = event_loop(
        &mut terminal,
        &mut app,
        &to_worker,
        &replies,
        options.poll_every,
    );
    drop(to_worker);
    drop(terminal);
    // The worker may be inside a slow request: do not wait for it.
    drop(worker);
    outcome
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    to_worker: &mpsc::Sender<Request>,
    replies: &mpsc::Receiver<Reply>,
    poll_every: Duration,
) -> io::Result<()> {
    let mut in_flight = 0usize;
    let mut next_poll = Instant::now() + poll_every;
    let mut dirty = true;
    loop {
        for request in app.outbox.drain(..) {
            if to_worker.send(request).is_err() {
                return Err(io::Error::other("the data source stopped"));
            }
            in_flight += 1;
        }
        if dirty {
            terminal.draw(|frame| crate::ui::draw(frame, app))?;
            dirty = false;
        }
        if app.quit {
            return Ok(());
        }
        if event::poll(Duration::from_millis(40))? {
            // Take every pending input before drawing again: a held key
            // costs one frame, not one per repeat.
            loop {
                app.handle(&event::read()?);
                if app.quit || !event::poll(Duration::ZERO)? {
                    break;
                }
            }
            dirty = true;
        }
        loop {
            match replies.try_recv() {
                Ok(reply) => {
                    in_flight = in_flight.saturating_sub(1);
                    app.apply(reply);
                    dirty = true;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the data source stopped"));
                }
            }
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + poll_every;
            // Skip a tick while the source is still busy.
            if in_flight == 0 {
                app.poll();
            }
        }
    }
}
