//! The live terminal view (ratatui): peers, drops per second, workers; keys to sort and to quit.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Flex, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};

use super::model::{self, SortBy, View, age, bits_per_second};
use super::{Options, Sampler};

const HELP: &str = "q quit · s next sort · r receive · t transmit · h handshake · k key";

/// Runs until `q` (or Esc, Ctrl-C); the terminal is restored whatever happens, panics included.
pub fn run(sampler: &mut Sampler, options: &Options) -> Result<(), String> {
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, sampler, options);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    sampler: &mut Sampler,
    options: &Options,
) -> Result<(), String> {
    let mut sort = options.sort;
    let mut before = None;
    let mut now = sampler.sample()?;
    let mut next_sample = Instant::now() + options.interval;
    loop {
        let view = model::view(before.as_ref(), &now, sort, usize::MAX);
        terminal
            .draw(|frame| draw(frame, &sampler.iface, &view, options.interval))
            .map_err(|e| format!("cannot draw on the terminal: {e}"))?;
        let wait = next_sample.saturating_duration_since(Instant::now());
        let pressed = event::poll(wait)
            .and_then(|ready| ready.then(event::read).transpose())
            .map_err(|e| format!("cannot read the terminal: {e}"))?;
        match pressed {
            Some(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(());
                    }
                    KeyCode::Char('s') => sort = sort.next(),
                    KeyCode::Char('r') => sort = SortBy::Rx,
                    KeyCode::Char('t') => sort = SortBy::Tx,
                    KeyCode::Char('h') => sort = SortBy::Handshake,
                    KeyCode::Char('k') => sort = SortBy::Key,
                    _ => {}
                }
                continue;
            }
            // A resize or another event: draw again, same readings.
            Some(_) => continue,
            None => {}
        }
        before = Some(std::mem::replace(&mut now, sampler.sample()?));
        next_sample = Instant::now() + options.interval;
    }
}

fn draw(frame: &mut Frame, iface: &str, view: &View, interval: Duration) {
    let drop_lines = view.drops_per_second.len().clamp(1, 6) as u16;
    let [head, peers, drops, workers, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(drop_lines + 2),
        Constraint::Length(view.workers.len() as u16 + 3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(super::text::headline(iface, view, interval.as_secs_f64()))
            .style(Style::new().add_modifier(Modifier::BOLD)),
        head,
    );
    frame.render_widget(peer_table(view), peers);
    let drop_text: Vec<Line> = if view.drops_per_second.is_empty() {
        vec![Line::from("none")]
    } else {
        view.drops_per_second
            .iter()
            .map(|(reason, rate)| Line::from(format!("{rate:>10.1}  {reason}")))
            .collect()
    };
    frame.render_widget(
        Paragraph::new(drop_text).block(Block::bordered().title(" drops per second ")),
        drops,
    );
    frame.render_widget(worker_table(view), workers);
    frame.render_widget(Paragraph::new(HELP), help);
}

fn peer_table(view: &View) -> Table<'static> {
    let column = |name: &'static str, by: Option<SortBy>| {
        if by == Some(view.sort) {
            Line::from(format!("{name} ▼")).style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            Line::from(name)
        }
    };
    let header = Row::new(vec![
        column("PEER", Some(SortBy::Key)),
        column("ENDPOINT", None),
        column("RECEIVE", Some(SortBy::Rx)),
        column("TRANSMIT", Some(SortBy::Tx)),
        column("HANDSHAKE", Some(SortBy::Handshake)),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = view.peers.iter().map(|p| {
        Row::new(vec![
            p.public_key.clone(),
            p.endpoint.clone(),
            bits_per_second(p.rx_bits_per_second),
            bits_per_second(p.tx_bits_per_second),
            age(p.handshake_age),
        ])
    });
    Table::new(
        rows,
        [
            Constraint::Length(44),
            Constraint::Length(30),
            Constraint::Length(14),
            Constraint::Length(14),
            Constraint::Length(11),
        ],
    )
    .flex(Flex::Start)
    .header(header)
    .block(Block::bordered().title(" peers "))
}

fn worker_table(view: &View) -> Table<'static> {
    let header = Row::new(vec![
        "WORKER", "RX pkt/s", "TX pkt/s", "RX batch", "TX batch",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = view.workers.iter().map(|w| {
        Row::new(vec![
            w.label.clone(),
            format!("{:.0}", w.rx_packets_per_second),
            format!("{:.0}", w.tx_packets_per_second),
            format!("{:.1}", w.rx_batch),
            format!("{:.1}", w.tx_batch),
        ])
    });
    Table::new(rows, [Constraint::Length(10); 5])
        .flex(Flex::Start)
        .header(header)
        .block(Block::bordered().title(" workers (packets per second, packets per batch) "))
}
