//! How the client commands (`submit`, `tail`) show a job to a person: one line per
//! event on stderr, coloured when stderr is a terminal (or when asked), and
//! `progress` events drawn as a progress bar instead of lines when stderr is a
//! terminal. With `--json` none of this is used: envelopes go to stdout as they are.
//!
//! Owns only presentation; it never decides what to send or when a job has ended.

use super::human_line;
use console::style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// Shows one job's envelopes.
pub struct JobView {
    colour: bool,
    /// Whether progress is drawn as a bar (else printed as lines).
    bars: bool,
    /// Where the bar will be drawn, until it is.
    target: Option<ProgressDrawTarget>,
    bar: Option<ProgressBar>,
}

impl JobView {
    /// A view for stderr: colour and bars as `colour`/`bars` say, `None` meaning
    /// "when stderr is a terminal" (colour also follows `NO_COLOR`/`CLICOLOR`).
    pub fn stderr(colour: Option<bool>, bars: Option<bool>) -> JobView {
        let colour = colour.unwrap_or_else(console::colors_enabled_stderr);
        let term = console::Term::stderr();
        let bars = bars.unwrap_or_else(|| term.features().is_attended());
        // `term_like` draws even when stderr is not a terminal (`--progress always`);
        // `term` would hide the bar, and the progress with it.
        let target = bars.then(|| ProgressDrawTarget::term_like_with_hz(Box::new(term), 20));
        JobView::new(colour, target)
    }

    /// A view drawing bars into `target` (`None`: no bars, progress as lines).
    pub fn new(colour: bool, target: Option<ProgressDrawTarget>) -> JobView {
        JobView {
            colour,
            bars: target.is_some(),
            target,
            bar: None,
        }
    }

    /// Shows one envelope.
    pub fn show(&mut self, env: &Value) {
        let p = &env["payload"];
        if env["type"] == "job.event" && p["kind"] == "progress" && self.bars {
            self.progress(&p["body"]);
            return;
        }
        let line = self.styled_line(env);
        match &self.bar {
            // Printed above the bar, which is redrawn below it.
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
        if super::is_terminal(env) {
            self.finish();
        }
    }

    /// Leaves the bar, if any, where it stands.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }

    fn progress(&mut self, body: &Value) {
        let current = body["current"].as_f64().unwrap_or(0.0).max(0.0);
        let total = body["total"].as_f64().filter(|t| *t > 0.0);
        let target = &mut self.target;
        let colour = self.colour;
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(
                None,
                target.take().unwrap_or_else(ProgressDrawTarget::hidden),
            );
            bar.set_style(bar_style(total.is_some(), colour));
            bar
        });
        if let Some(total) = total
            && bar.length() != Some(total.round() as u64)
        {
            bar.set_length(total.round() as u64);
            bar.set_style(bar_style(true, colour));
        }
        bar.set_position(current.round() as u64);
        let units = body["units"].as_str().unwrap_or_default();
        let message = body["message"].as_str().unwrap_or_default();
        let sep = if units.is_empty() || message.is_empty() {
            ""
        } else {
            " "
        };
        bar.set_message(format!("{units}{sep}{message}"));
    }

    /// `human_line`, with the event kind or outcome coloured.
    pub fn styled_line(&self, env: &Value) -> String {
        let line = human_line(env);
        if !self.colour {
            return line;
        }
        // Colour the word after the `[seq] ` prefix: the kind or the outcome.
        let (seq, rest) = match line.find("] ") {
            Some(i) if line.starts_with('[') => line.split_at(i + 2),
            _ => ("", line.as_str()),
        };
        let (word, tail) = rest.split_at(rest.find(' ').unwrap_or(rest.len()));
        let p = &env["payload"];
        let word = style(word).force_styling(true);
        let word = match env["type"].as_str().unwrap_or_default() {
            "job.result" if p["final_status"] == "success" => word.green().bold(),
            "job.result" => word.yellow().bold(),
            "job.error" => word.red().bold(),
            "job.accepted" => word.blue(),
            "job.event" => match p["body"]["level"].as_str() {
                Some("error") => word.red(),
                Some("warn") => word.yellow(),
                _ => word.cyan(),
            },
            _ => word,
        };
        format!("{}{word}{tail}", style(seq).force_styling(true).dim())
    }
}

fn bar_style(with_total: bool, colour: bool) -> ProgressStyle {
    let template = match (with_total, colour) {
        (true, true) => "{spinner:.cyan} [{bar:32.cyan/blue}] {pos}/{len} {msg}",
        (true, false) => "{spinner} [{bar:32}] {pos}/{len} {msg}",
        (false, _) => "{spinner} {pos} {msg}",
    };
    // The templates are constants; fall back to the default style rather than fail.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;
    use serde_json::json;

    fn event(seq: u64, kind: &str, body: Value) -> Value {
        json!({"type": "job.event", "event_seq": seq, "job_id": "job_1",
               "payload": {"kind": kind, "body": body}})
    }

    #[test]
    fn progress_events_draw_a_bar_and_other_events_print_above_it() {
        let term = InMemoryTerm::new(10, 80);
        let mut view = JobView::new(
            false,
            Some(ProgressDrawTarget::term_like(Box::new(term.clone()))),
        );
        view.show(&event(
            1,
            "progress",
            json!({"current": 3, "total": 10, "units": "ticks"}),
        ));
        view.show(&event(
            2,
            "log",
            json!({"level": "info", "message": "tick 3"}),
        ));
        view.show(&event(
            3,
            "progress",
            json!({"current": 7, "total": 10, "units": "ticks"}),
        ));
        let drawn = term.contents();
        assert!(drawn.contains("7/10 ticks"), "{drawn}");
        assert!(
            drawn.contains("log"),
            "the log line is printed above the bar: {drawn}"
        );
        assert!(
            !drawn.contains("3/10"),
            "the bar is redrawn in place: {drawn}"
        );
        view.show(
            &json!({"type": "job.result", "event_seq": 4, "job_id": "job_1",
                          "payload": {"final_status": "success", "result": {"ticks": 10}}}),
        );
        let drawn = term.contents();
        assert!(drawn.contains("success"), "{drawn}");
        assert!(view.bar.is_none());
    }

    #[test]
    fn progress_without_a_total_counts_up() {
        let term = InMemoryTerm::new(5, 80);
        let mut view = JobView::new(
            false,
            Some(ProgressDrawTarget::term_like(Box::new(term.clone()))),
        );
        view.show(&event(
            1,
            "progress",
            json!({"current": 42, "message": "rows"}),
        ));
        assert!(term.contents().contains("42 rows"), "{}", term.contents());
    }

    #[test]
    fn outcomes_and_levels_are_coloured_only_when_asked() {
        let error = json!({"type": "job.error", "event_seq": 9, "job_id": "job_1",
                           "payload": {"code": "INTERNAL_ERROR", "message": "x"}});
        let plain = JobView::new(false, None).styled_line(&error);
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        let coloured = JobView::new(true, None).styled_line(&error);
        assert!(coloured.contains("\u{1b}[31"), "red: {coloured:?}");
        assert_eq!(console::strip_ansi_codes(&coloured), plain);
    }
}
