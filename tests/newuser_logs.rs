//! A new user's log-processing service, written from README.md and the rustdoc alone by someone who
//! knows Elixir's GenStage: lines pushed in from outside while the pipeline runs, parsed (malformed
//! ones skipped and counted), broadcast to a partitioned router (per-user order kept in each
//! worker), a counter and an archiver that takes only errors, then drained from another task.
//!
//! ```text
//! source (from_channel) -> parse (broadcast) -> router (partition(2)) -> [Worker; 2]
//!                                            -> counter
//!                                            -[selector: errors]-> archiver
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use tokio::sync::watch;
use tokio::time::timeout;

/// Bound on every wait, against hangs only: nothing here waits for time to pass.
const HANG: Duration = Duration::from_secs(20);

/// Lines fed in; every `MALFORMED_EVERY`-th (from 3) is malformed.
const LINES: u64 = 700;
const MALFORMED_EVERY: u64 = 7;
const USERS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    user: u64,
    seq: u64,
    level: Level,
    msg: String,
}

/// The first `n` lines of the feed.
fn feed_lines(n: u64) -> Vec<String> {
    let mut seqs = [0u64; USERS as usize];
    (0..n).map(|i| line(i, &mut seqs)).collect()
}

/// Line `i` of the feed: `"<user> <seq> <LEVEL> <msg>"`, or something that does not parse.
fn line(i: u64, seqs: &mut [u64; USERS as usize]) -> String {
    if i % MALFORMED_EVERY == 3 {
        // Four kinds of garbage: empty, too short, a bad number, an unknown level.
        return match (i / MALFORMED_EVERY) % 4 {
            0 => String::new(),
            1 => "garbage".to_string(),
            2 => format!("{} x INFO nope", i % USERS),
            _ => format!("{} 0 FATAL nope", i % USERS),
        };
    }
    let user = (i * 3 + i / 11) % USERS;
    let seq = seqs[user as usize];
    seqs[user as usize] += 1;
    let level = if i.is_multiple_of(4) { "ERROR" } else { "INFO" };
    format!("{user} {seq} {level} line {i}")
}

fn parse_line(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let user = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let level = match parts.next()? {
        "INFO" => Level::Info,
        "ERROR" => Level::Error,
        _ => return None,
    };
    let msg = parts.next()?.to_string();
    Some(Record {
        user,
        seq,
        level,
        msg,
    })
}

/// Asks `Parse` how many malformed lines it has skipped.
struct Malformed;

/// Parses lines; a malformed one is skipped and counted, as a GenStage stage would keep a counter
/// in its state rather than crash on bad input.
#[derive(Default)]
struct Parse {
    malformed: u64,
}

#[stage(producer_consumer, dispatcher = broadcast)]
impl Parse {
    fn handle_events(&mut self, lines: Vec<String>) -> Vec<Record> {
        let mut records = Vec::with_capacity(lines.len());
        for line in lines {
            match parse_line(&line) {
                Some(record) => records.push(record),
                None => self.malformed += 1,
            }
        }
        records
    }

    fn handle_call(&mut self, _request: Malformed, reply: ReplyTo<u64>) {
        reply.reply(self.malformed);
    }
}

/// Routes records by user: even users to partition 0, odd ones to partition 1.
struct Router;

#[stage(producer_consumer, dispatcher = partition(2), max_demand = 50)]
impl Router {
    fn handle_events(&mut self, records: Vec<Record>) -> Vec<Record> {
        records
    }

    fn partition(&self, record: &Record) -> Option<usize> {
        Some((record.user % 2) as usize)
    }
}

/// What the workers saw: (partition, user, seq), in the order each worker handled them.
type WorkLog = Arc<Mutex<Vec<(usize, u64, u64)>>>;

/// Handles one partition's records; learns which partition from its subscription.
struct Worker {
    partition: Option<usize>,
    log: WorkLog,
}

#[stage(consumer, max_demand = 20, min_demand = 5)]
impl Worker {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        self.partition = subscription.partition();
    }

    fn handle_events(&mut self, records: Vec<Record>) -> Result<(), String> {
        let partition = self
            .partition
            .ok_or_else(|| "a worker without a partition".to_string())?;
        let mut log = self.log.lock().map_err(|e| e.to_string())?;
        log.extend(records.iter().map(|r| (partition, r.user, r.seq)));
        Ok(())
    }
}

/// Counts records per level; publishes its total as it goes, and its final counts in `terminate`.
struct Counter {
    infos: u64,
    errors: u64,
    progress: watch::Sender<u64>,
    final_counts: Arc<Mutex<Vec<(u64, u64)>>>,
}

#[stage(consumer)]
impl Counter {
    fn handle_events(&mut self, records: Vec<Record>) {
        for record in &records {
            match record.level {
                Level::Info => self.infos += 1,
                Level::Error => self.errors += 1,
            }
        }
        self.progress.send_replace(self.infos + self.errors);
    }

    fn terminate(&mut self, _status: &StageStatus) {
        if let Ok(mut counts) = self.final_counts.lock() {
            counts.push((self.infos, self.errors));
        }
    }
}

/// Keeps the error records, in the order received.
struct Archiver {
    archive: Arc<Mutex<Vec<Record>>>,
}

#[stage(consumer, max_demand = 10)]
impl Archiver {
    fn handle_events(&mut self, records: Vec<Record>) -> Result<(), String> {
        self.archive
            .lock()
            .map_err(|e| e.to_string())?
            .extend(records);
        Ok(())
    }
}

/// The running service and what its stages leave behind for the test to read.
struct Service {
    running: PipelineHandle,
    parse: ProducerConsumerRef<Parse>,
    progress: watch::Receiver<u64>,
    final_counts: Arc<Mutex<Vec<(u64, u64)>>>,
    work_log: WorkLog,
    archive: Arc<Mutex<Vec<Record>>>,
}

fn start_service(source: FromChannel<String>) -> Service {
    let (progress, progress_rx) = watch::channel(0u64);
    let final_counts = Arc::new(Mutex::new(Vec::new()));
    let work_log: WorkLog = Arc::new(Mutex::new(Vec::new()));
    let archive = Arc::new(Mutex::new(Vec::new()));

    let p = pipeline! {
        source = source;
        source -> parse = Parse::default();
        parse -> router = Router -> workers = [Worker { partition: None, log: work_log.clone() }; 2];
        parse -> counter = Counter {
            infos: 0,
            errors: 0,
            progress: progress.clone(),
            final_counts: final_counts.clone(),
        };
        parse -[selector = |r: &Record| r.level == Level::Error]-> archiver = Archiver {
            archive: archive.clone(),
        };
    };
    let parse = p.parse.clone();
    Service {
        running: p.start(),
        parse,
        progress: progress_rx,
        final_counts,
        work_log,
        archive,
    }
}

/// Asserts the report and what the stages saw against the `accepted` lines the feed took: exact
/// counts per stage, the broadcast's copies, the totals, per-user order, nothing lost.
/// `late` is what a consumer subscribed to `parse` while running received (none when there is none).
fn check_service(report: &Report, service: &Service, accepted: &[String], late: &[Record]) {
    let lines = accepted.len() as u64;
    let records: Vec<Record> = accepted.iter().filter_map(|l| parse_line(l)).collect();
    let parsed = records.len() as u64;
    let errors: Vec<Record> = records
        .iter()
        .filter(|r| r.level == Level::Error)
        .cloned()
        .collect();
    let error_count = errors.len() as u64;
    let even = records.iter().filter(|r| r.user % 2 == 0).count() as u64;
    let odd = parsed - even;

    let stage = |name: &str| {
        report
            .stage(name)
            .unwrap_or_else(|| panic!("no stage {name} in\n{report}"))
            .clone()
    };
    let source = stage("source");
    assert_eq!(
        (source.emitted, source.events_out, source.lost),
        (lines, lines, 0),
        "{report}"
    );
    assert_eq!(source.status, StageStatus::ShutDown, "{report}");

    let parse = stage("parse");
    assert_eq!(parse.events_in, lines, "{report}");
    assert_eq!(parse.emitted, parsed, "{report}");
    // Each record goes to the router and the counter, and the errors to the archiver too.
    let deliveries = 2 * parsed + error_count + late.len() as u64;
    assert_eq!(parse.copies, deliveries - parsed, "{report}");
    assert_eq!(parse.events_out, deliveries, "{report}");

    let router = stage("router");
    assert_eq!(
        (router.events_in, router.emitted, router.events_out),
        (parsed, parsed, parsed),
        "{report}"
    );
    let workers: Vec<u64> = report.instances("workers").map(|s| s.events_in).collect();
    assert_eq!(workers, [even, odd], "{report}");
    assert_eq!(stage("counter").events_in, parsed, "{report}");
    assert_eq!(stage("archiver").events_in, error_count, "{report}");

    for s in &report.stages {
        assert_eq!((s.lost, s.discarded, s.excess), (0, 0, 0), "{report}");
        if s.name != "source" {
            assert_eq!(s.status, StageStatus::Finished, "{report}");
        }
    }

    // emitted = handled + discarded + lost, in total and on every edge.
    let totals = report.totals();
    assert_eq!(
        totals.emitted,
        lines + parsed + (deliveries - parsed) + parsed
    );
    assert_eq!(
        totals.handled,
        lines + 3 * parsed + error_count + late.len() as u64
    );
    assert_eq!((totals.discarded, totals.lost), (0, 0));
    assert!(report.balanced(), "{report}");

    // The counter's terminate ran once, with every record counted by level.
    assert_eq!(
        *service.final_counts.lock().expect("counts"),
        [(parsed - error_count, error_count)]
    );
    // The archiver got exactly the errors, in emission order.
    assert_eq!(*service.archive.lock().expect("archive"), errors);

    // Each worker got exactly its partition's users, each user's records in order, none missing.
    let mut expected: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for record in &records {
        expected.entry(record.user).or_default().push(record.seq);
    }
    let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(partition, user, seq) in service.work_log.lock().expect("work log").iter() {
        assert_eq!(
            partition as u64,
            user % 2,
            "user {user} in partition {partition}"
        );
        seen.entry(user).or_default().push(seq);
    }
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_service_fed_from_outside_drains_with_every_line_accounted_for() {
    let lines = feed_lines(LINES);
    let parsed = lines.iter().filter_map(|l| parse_line(l)).count() as u64;
    let malformed = LINES - parsed;
    assert_eq!(malformed, 100);
    assert!(lines.last().and_then(|l| parse_line(l)).is_some());

    let (feed, source) = from_channel::<String>(16);
    let mut service = start_service(source);
    let shutdown = service.running.shutdown_handle();

    // The outside world pushes lines while the pipeline runs; `send` waits while it is busy.
    let feeder = tokio::spawn({
        let feed = feed.clone();
        let lines = lines.clone();
        async move {
            for line in lines {
                feed.send(line).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }
    });
    timeout(HANG, feeder)
        .await
        .expect("the feeder hung")
        .expect("the feeder's task")
        .expect("every line accepted");

    // Once the counter has seen every record, the parser has handled every line (the last line
    // is valid), so its count of malformed lines is exact.
    timeout(HANG, service.progress.wait_for(|n| *n == parsed))
        .await
        .expect("the counter never saw every record")
        .expect("the counter's progress channel");
    let skipped = timeout(HANG, service.parse.call(Malformed))
        .await
        .expect("the call hung")
        .expect("the parser answers while running");
    assert_eq!(skipped, malformed);

    // An admin task drains the service; the feed's sender is still alive, so only the shutdown
    // ends it.
    let admin = tokio::spawn(async move { shutdown.shutdown() });
    timeout(HANG, admin)
        .await
        .expect("the admin task hung")
        .expect("the admin task")
        .expect("the shutdown is accepted while running");
    let report = timeout(HANG, &mut service.running)
        .await
        .expect("the shutdown hung")
        .expect("a graceful shutdown ends without error");

    // The channel is closed: a line pushed now is refused and given back, not silently dropped.
    let refused = feed.send("0 0 INFO late".to_string()).await;
    assert_eq!(refused.map_err(|e| e.0), Err("0 0 INFO late".to_string()));
    // And the parser is gone.
    assert!(matches!(
        service.parse.call(Malformed).await,
        Err(CallError::Ended { .. })
    ));
    check_service(&report, &service, &lines, &[]);
}

/// Lines accepted by the channel before the pipeline starts are delivered by a shutdown asked for
/// at once: "a `from_channel` producer closes its channel and delivers what it had accepted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_accepted_before_an_immediate_shutdown_are_all_handled() {
    let lines = feed_lines(LINES);
    let (feed, source) = from_channel::<String>(LINES as usize);
    for line in &lines {
        feed.try_send(line.clone()).expect("room for every line");
    }
    let mut service = start_service(source);
    let shutdown = service.running.shutdown_handle();
    tokio::spawn(async move { shutdown.shutdown() })
        .await
        .expect("the admin task")
        .expect("the shutdown is accepted while running");
    let report = timeout(HANG, &mut service.running)
        .await
        .expect("the shutdown hung")
        .expect("a graceful shutdown ends without error");
    assert!(feed.send(String::new()).await.is_err());
    check_service(&report, &service, &lines, &[]);
}

/// A feeder that never stops is cut off by the shutdown: every line `send` accepted is handled,
/// and the first refused one is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_feeder_is_cut_off_and_every_accepted_line_handled() {
    let (feed, source) = from_channel::<String>(4);
    let mut service = start_service(source);
    let shutdown = service.running.shutdown_handle();
    let feeder = tokio::spawn(async move {
        let mut seqs = [0u64; USERS as usize];
        let mut accepted = Vec::new();
        for i in 0.. {
            let line = line(i, &mut seqs);
            match feed.send(line.clone()).await {
                Ok(()) => accepted.push(line),
                Err(refused) => {
                    assert_eq!(refused.0, line, "the refused line is given back");
                    break;
                }
            }
        }
        accepted
    });
    // Let some records through, then drain from an admin task.
    timeout(HANG, service.progress.wait_for(|n| *n >= 200))
        .await
        .expect("the counter never saw 200 records")
        .expect("the counter's progress channel");
    tokio::spawn(async move { shutdown.shutdown() })
        .await
        .expect("the admin task")
        .expect("the shutdown is accepted while running");
    let report = timeout(HANG, &mut service.running)
        .await
        .expect("the shutdown hung")
        .expect("a graceful shutdown ends without error");
    let accepted = timeout(HANG, feeder)
        .await
        .expect("the feeder was never refused")
        .expect("the feeder's task");
    assert!(accepted.len() >= 200, "{} lines accepted", accepted.len());
    check_service(&report, &service, &accepted, &[]);
}

/// A second archiver joins the running broadcast, as `tail -f` would: it gets exactly the errors
/// parsed after it subscribed, in order, and the report counts its copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archiver_subscribed_while_running_gets_the_errors_parsed_after_it() {
    let lines = feed_lines(LINES);
    let half = LINES as usize / 2;
    assert!(
        parse_line(&lines[half - 1]).is_some(),
        "the first half ends with a record"
    );
    let parsed = |lines: &[String]| lines.iter().filter_map(|l| parse_line(l)).count() as u64;
    let (feed, source) = from_channel::<String>(16);
    let mut service = start_service(source);

    for line in &lines[..half] {
        feed.send(line.clone()).await.expect("accepted");
    }
    // The counter has every record of the first half, so the broadcast has sent each of them to
    // every consumer: none is left for a consumer subscribed now.
    let first = parsed(&lines[..half]);
    timeout(HANG, service.progress.wait_for(|n| *n == first))
        .await
        .expect("the counter never saw the first half")
        .expect("the counter's progress channel");
    let late_archive = Arc::new(Mutex::new(Vec::new()));
    let late = timeout(
        HANG,
        service.running.add_consumer(Archiver {
            archive: late_archive.clone(),
        }),
    )
    .await
    .expect("adding hung")
    .expect("a consumer added while running");
    timeout(
        HANG,
        service.running.subscribe_selected(
            &service.parse,
            &late,
            SubscribeOptions::new(),
            |r: &Record| r.level == Level::Error,
        ),
    )
    .await
    .expect("subscribing hung")
    .expect("subscribed to the running broadcast");

    for line in &lines[half..] {
        feed.send(line.clone()).await.expect("accepted");
    }
    let all = parsed(&lines);
    timeout(HANG, service.progress.wait_for(|n| *n == all))
        .await
        .expect("the counter never saw every record")
        .expect("the counter's progress channel");
    let shutdown = service.running.shutdown_handle();
    tokio::spawn(async move { shutdown.shutdown() })
        .await
        .expect("the admin task")
        .expect("the shutdown is accepted while running");
    let report = timeout(HANG, &mut service.running)
        .await
        .expect("the shutdown hung")
        .expect("a graceful shutdown ends without error");

    let late_errors: Vec<Record> = lines[half..]
        .iter()
        .filter_map(|l| parse_line(l))
        .filter(|r| r.level == Level::Error)
        .collect();
    assert!(!late_errors.is_empty());
    assert_eq!(*late_archive.lock().expect("late archive"), late_errors);
    assert_eq!(
        report
            .stage("Archiver")
            .map(|s| (s.events_in, s.status.clone())),
        Some((late_errors.len() as u64, StageStatus::Finished)),
        "{report}"
    );
    check_service(&report, &service, &lines, &late_errors);
}

/// A tail of the parsed records, kept in a struct as a caller holds one: the feed's sender, the
/// records read as a `Stream`, and the running pipeline. The types of its fields and of
/// `start_tail`'s arguments are named through the prelude alone.
struct Tail {
    lines: tokio::sync::mpsc::Sender<String>,
    records: EventStream<Record>,
    running: PipelineHandle,
}

fn start_tail(source: FromChannel<String>, sink: StreamSink<Record>) -> PipelineHandle {
    pipeline! { source = source; source -> parse = Parse::default() -> sink = sink }.start()
}

/// The parsed records read by the caller as a stream while another task feeds lines in: exactly
/// the valid lines' records, in order; dropping the sender ends the pipeline, and so the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_reads_the_parsed_records_as_a_stream() {
    let (lines, source) = from_channel::<String>(4);
    let (sink, records) = to_stream::<Record>();
    let mut tail = Tail {
        lines,
        records,
        running: start_tail(source, sink),
    };

    let feed = tail.lines.clone();
    let feeder = tokio::spawn(async move {
        for line in feed_lines(100) {
            feed.send(line).await.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    });
    // The pipeline takes lines only as the stream is read: read while the feeder feeds.
    drop(tail.lines);
    let mut read = Vec::new();
    while let Some(record) = timeout(HANG, tail.records.next())
        .await
        .expect("the stream hung")
    {
        read.push(record);
    }
    let expected: Vec<Record> = feed_lines(100)
        .iter()
        .filter_map(|l| parse_line(l))
        .collect();
    assert_eq!(read, expected);
    timeout(HANG, feeder)
        .await
        .expect("the feeder hung")
        .expect("the feeder's task")
        .expect("every line accepted");
    let report = timeout(HANG, tail.running)
        .await
        .expect("the pipeline hung")
        .expect("the pipeline ends without error");
    assert_eq!(
        report
            .stage("sink")
            .map(|s| (s.events_in, s.status.clone())),
        Some((expected.len() as u64, StageStatus::Finished))
    );
    assert!(report.balanced(), "{report}");
}
