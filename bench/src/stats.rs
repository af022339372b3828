//! What one load phase observed: answers by class, fresh versus repeat checkouts, and the latency distribution.

use std::time::Duration;

use serde::Serialize;

use crate::api::{Answer, Failure};
use crate::usage::Usage;

/// Accumulates the measured checkouts of one run. Latencies are kept whole (a few hundred thousand values at most)
/// so percentiles are exact.
#[derive(Debug, Default)]
pub struct Recorder {
    latencies_us: Vec<u64>,
    counts: StatusCounts,
    fresh: u64,
    repeat: u64,
}

/// Checkouts by kind of answer.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct StatusCounts {
    /// 2xx answers.
    #[serde(rename = "2xx")]
    pub success: u64,
    /// 4xx answers.
    #[serde(rename = "4xx")]
    pub client_error: u64,
    /// 5xx answers.
    #[serde(rename = "5xx")]
    pub server_error: u64,
    /// 1xx and 3xx answers (none expected).
    pub other: u64,
    /// No answer at all (the sum of the three kinds below).
    pub errors: u64,
    /// No answer within the request timeout.
    pub timeouts: u64,
    /// The connection could not be opened.
    pub connect_errors: u64,
    /// Other failures (connection reset, broken body).
    pub other_errors: u64,
    /// Rate mode only: arrivals not sent because too many requests were already outstanding.
    pub dropped: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Figures of one load phase, as written to the report.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Requests measured (answered or not, excluding dropped arrivals).
    pub total_requests: u64,
    /// Measured seconds.
    pub duration_s: f64,
    /// All measured requests per second.
    pub requests_per_s: f64,
    /// 2xx on orders this run had not yet seen paid, per second.
    pub fresh_checkouts_per_s: f64,
    /// 2xx on orders this run had already seen paid, per second.
    pub repeat_checkouts_per_s: f64,
    /// Fresh checkouts in the window.
    pub fresh_checkouts: u64,
    /// Repeat checkouts in the window.
    pub repeat_checkouts: u64,
    /// Answers by class.
    pub status: StatusCounts,
    /// Latency of all measured requests, answered or not.
    pub latency: Option<Latency>,
    /// CPU and memory of the machine's processes over the window (when /proc could be read).
    pub usage: Option<Usage>,
}

impl Recorder {
    /// Records one measured checkout; `fresh` says whether a 2xx was the first this run saw for the order.
    pub fn record(&mut self, answer: Answer, latency: Duration, fresh: bool) {
        self.latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        match answer {
            Answer::Status(200..=299) => {
                self.counts.success += 1;
                if fresh {
                    self.fresh += 1;
                } else {
                    self.repeat += 1;
                }
            }
            Answer::Status(400..=499) => self.counts.client_error += 1,
            Answer::Status(500..=599) => self.counts.server_error += 1,
            Answer::Status(_) => self.counts.other += 1,
            Answer::Failed(failure) => {
                self.counts.errors += 1;
                match failure {
                    Failure::Timeout => self.counts.timeouts += 1,
                    Failure::Connect => self.counts.connect_errors += 1,
                    Failure::Other => self.counts.other_errors += 1,
                }
            }
        }
    }

    /// Records an arrival that was never sent.
    pub fn record_dropped(&mut self) {
        self.counts.dropped += 1;
    }

    /// The figures over a window of `duration`.
    pub fn summarise(mut self, duration: Duration) -> Summary {
        self.latencies_us.sort_unstable();
        let seconds = duration.as_secs_f64();
        let per_second = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        let total = self.latencies_us.len() as u64;
        Summary {
            total_requests: total,
            duration_s: seconds,
            requests_per_s: per_second(total),
            fresh_checkouts_per_s: per_second(self.fresh),
            repeat_checkouts_per_s: per_second(self.repeat),
            fresh_checkouts: self.fresh,
            repeat_checkouts: self.repeat,
            status: self.counts,
            latency: latency(&self.latencies_us),
            usage: None,
        }
    }
}

/// Percentiles of sorted microsecond latencies (nearest-rank), or `None` when there are none.
fn latency(sorted_us: &[u64]) -> Option<Latency> {
    let max = *sorted_us.last()?;
    let rank = |p: f64| {
        let index = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
        sorted_us[index.clamp(1, sorted_us.len()) - 1]
    };
    let ms = |us: u64| us as f64 / 1000.0;
    Some(Latency { p50_ms: ms(rank(50.0)), p95_ms: ms(rank(95.0)), p99_ms: ms(rank(99.0)), max_ms: ms(max) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_class_and_fresh_ones_apart() {
        let mut recorder = Recorder::default();
        let ms = Duration::from_millis;
        recorder.record(Answer::Status(200), ms(1), true);
        recorder.record(Answer::Status(200), ms(2), false);
        recorder.record(Answer::Status(400), ms(3), false);
        recorder.record(Answer::Status(503), ms(4), false);
        recorder.record(Answer::Failed(Failure::Timeout), ms(5), false);
        recorder.record_dropped();
        let summary = recorder.summarise(Duration::from_secs(2));
        assert_eq!(summary.total_requests, 5);
        assert_eq!(
            summary.status,
            StatusCounts {
                success: 2,
                client_error: 1,
                server_error: 1,
                other: 0,
                errors: 1,
                timeouts: 1,
                connect_errors: 0,
                other_errors: 0,
                dropped: 1
            }
        );
        assert_eq!((summary.fresh_checkouts, summary.repeat_checkouts), (1, 1));
        assert_eq!(summary.fresh_checkouts_per_s, 0.5);
        assert_eq!(summary.requests_per_s, 2.5);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        let latency = latency(&sorted).unwrap();
        assert_eq!(latency, Latency { p50_ms: 50.0, p95_ms: 95.0, p99_ms: 99.0, max_ms: 100.0 });
        assert_eq!(super::latency(&[]), None);
        assert_eq!(super::latency(&[7000]).unwrap().p50_ms, 7.0);
    }
}
