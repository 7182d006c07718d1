//! Live progress on stderr: an `indicatif` bar when stderr is a terminal (elapsed/total,
//! request rate, live sessions, p99 of the last second, failures, lost sessions), or one
//! plain status line every 2 s when it is not (a CI log, a file).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::Second;

/// Where progress goes.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A progress bar (stderr is a terminal).
    Bar(ProgressBar),
    /// Plain lines every 2 s.
    Plain,
}

impl Progress {
    /// A bar if stderr is a terminal, plain lines otherwise.
    pub fn for_stderr(total: Duration) -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Self::bar(total, ProgressDrawTarget::stderr())
        } else {
            Progress::Plain
        }
    }

    /// A bar of `total` drawn on `target`.
    pub fn bar(total: Duration, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total.as_secs().max(1)), target);
        let style = ProgressStyle::with_template(
            "{spinner:.green} {prefix} [{bar:12.cyan/blue}] {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!(
            "{}/{}",
            clock(Duration::ZERO, total),
            clock(total, total)
        ));
        bar.set_message("starting");
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    /// A line above the bar (or on its own).
    pub fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Plain => eprintln!("{line}"),
        }
    }

    /// The figures of one more second of traffic (`failed` and `row.lost_sessions` are
    /// totals so far).
    pub fn second(&self, row: &Second, elapsed: Duration, total: Duration, failed: u64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(elapsed.as_secs().min(total.as_secs()));
                bar.set_prefix(format!("{}/{}", clock(elapsed, total), clock(total, total)));
                bar.set_message(message(row, failed));
            }
            Progress::Plain if row.second.is_multiple_of(2) => eprintln!(
                "[{:>5.0}s/{:.0}s] {:>8} req/s  live sessions {:>7}  p99 {:>7.2} ms  failed {}  lost {}",
                elapsed.as_secs_f64(),
                total.as_secs_f64(),
                row.answered,
                row.live_sessions,
                row.p99_us as f64 / 1000.0,
                failed,
                row.lost_sessions
            ),
            Progress::Plain => {}
        }
    }

    /// Traffic is over: the bar goes away (the summary follows on stdout).
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The bar's message: the last second's figures.
fn message(row: &Second, failed: u64) -> String {
    format!(
        "{} req/s  live {}  failed {}  lost {}  p99 {:.2} ms (last s)",
        row.answered,
        row.live_sessions,
        failed,
        row.lost_sessions,
        row.p99_us as f64 / 1000.0,
    )
}

/// `m:ss`, or `h:mm:ss` when `total` is an hour or more.
fn clock(d: Duration, total: Duration) -> String {
    let s = d.as_secs();
    if total.as_secs() >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, line: &str) -> std::io::Result<()> {
            self.write_str(&format!("{line}\n"))
        }
        fn write_str(&self, text: &str) -> std::io::Result<()> {
            self.0.lock().expect("screen").push_str(text);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_shows_elapsed_of_total_rate_live_p99_and_failures() {
        let screen = Screen::default();
        let progress = Progress::bar(
            Duration::from_secs(90),
            ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        let row = Second {
            second: 3,
            answered: 12_345,
            failed: 1,
            live_sessions: 4_321,
            lost_sessions: 2,
            p50_us: 300,
            p99_us: 1_250,
            max_us: 9_000,
        };
        progress.second(&row, Duration::from_secs(3), Duration::from_secs(90), 7);
        progress.println("event at 2.0 s: set_weight pdf0 = 0: ok (HTTP 200)");
        if let Progress::Bar(bar) = &progress {
            bar.tick();
            assert_eq!(bar.position(), 3);
            assert_eq!(bar.length(), Some(90));
        }
        std::thread::sleep(Duration::from_millis(300));
        let text = screen.0.lock().expect("screen").clone();
        for part in [
            "0:03/1:30",
            "12345 req/s",
            "live 4321",
            "p99 1.25 ms (last s)",
            "failed 7",
            "lost 2",
            "set_weight pdf0 = 0",
        ] {
            assert!(text.contains(part), "{part:?} not in {text:?}");
        }
        progress.finish();
    }

    #[test]
    fn clock_is_m_ss_or_h_mm_ss() {
        let hour = Duration::from_secs(3_600);
        assert_eq!(clock(Duration::from_secs(3_725), hour), "1:02:05");
        assert_eq!(clock(Duration::from_secs(65), hour), "0:01:05");
        assert_eq!(
            clock(Duration::from_secs(65), Duration::from_secs(90)),
            "1:05"
        );
    }
}
