//! The compute side: one queue of jobs and one scheduler thread that runs them on the
//! model's own rayon pool, while the HTTP side keeps accepting.
//!
//! The scheduler takes jobs in arrival order until `max_batch_tokens` (at least one job),
//! joins the inputs of jobs that ask for the same task into one library call (which sorts
//! them by length and runs them `batch_size` at a time), and hands each job its own slice
//! of the results. A padded batch computes exactly what each input gets alone (the
//! encoder attends over real tokens only), so batching never changes an answer.

use super::metrics::Metrics;
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;
use xlmr::{ClassifyFunction, LabelScore, Model, Pooling, Prediction, TopK};

/// What to compute for a job's inputs; jobs with equal tasks share library calls.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    /// Pooled vectors (or per-token with `Pooling::None`), not normalized.
    Embed(Pooling),
    HiddenStates(Option<Vec<usize>>),
    FillMask { top_k: usize },
    /// Every label, best first; `None`: the pipeline's default function for the model.
    Classify { function: Option<ClassifyFunction> },
}

/// One result per input of the job, in its order.
#[derive(Debug)]
pub enum Output {
    Vectors(Vec<Vec<Vec<f32>>>),
    Hidden(Vec<Vec<Vec<Vec<f32>>>>),
    Masks(Vec<Vec<Vec<Prediction>>>),
    Labels(Vec<Vec<LabelScore>>),
}

/// Why a job got no output: the library refused the input, or a bug (a caught panic).
#[derive(Debug)]
pub enum Failure {
    Rejected(xlmr::Error),
    Panicked(String),
}

type Reply = oneshot::Sender<Result<Output, Failure>>;

struct Job {
    task: Task,
    seqs: Vec<Vec<u32>>,
    tokens: usize,
    queued: Instant,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    alive: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Jobs are pushed and popped by single calls: a panic cannot leave the queue torn.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Worker {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Marks the worker dead however its thread ends (return or unwinding panic).
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
        // Fail whatever is still queued, so no client waits for a dead worker.
        let mut q = self.0.lock();
        q.closed = true;
        for job in q.jobs.drain(..) {
            let _ = job.reply.send(Err(Failure::Panicked("the compute worker stopped".into())));
        }
    }
}

impl Worker {
    pub fn start(model: Arc<Model>, pool: rayon::ThreadPool, max_batch_tokens: usize, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { queue: Mutex::default(), ready: Condvar::new(), alive: AtomicBool::new(true) });
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("xlmr-scheduler".into()).spawn(move || {
            let guard = AliveGuard(s);
            while let Some(batch) = next_batch(&guard.0, max_batch_tokens, &metrics) {
                run_batch(&model, &pool, batch, &metrics);
            }
        })?;
        Ok(Worker { shared, thread: Mutex::new(Some(thread)) })
    }

    pub fn alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Queues a job and waits for its result. A job submitted after `close` (or to a dead
    /// worker) fails at once.
    pub async fn submit(&self, task: Task, seqs: Vec<Vec<u32>>, metrics: &Metrics) -> Result<Output, Failure> {
        let (reply, answer) = oneshot::channel();
        let tokens = seqs.iter().map(Vec::len).sum();
        {
            let mut q = self.shared.lock();
            if q.closed {
                return Err(Failure::Panicked("the compute worker is not running".into()));
            }
            q.jobs.push_back(Job { task, seqs, tokens, queued: Instant::now(), reply });
            metrics.queue_size.set(q.jobs.len() as i64);
        }
        self.shared.ready.notify_one();
        answer.await.unwrap_or_else(|_| Err(Failure::Panicked("the compute worker dropped the job".into())))
    }

    /// Stops the worker once the queue is empty and waits for it. With `abandon_queued`,
    /// jobs not started yet fail now (after a shutdown timeout); the batch running finishes.
    pub fn close(&self, abandon_queued: bool) {
        {
            let mut q = self.shared.lock();
            q.closed = true;
            if abandon_queued {
                for job in q.jobs.drain(..) {
                    let _ = job.reply.send(Err(Failure::Panicked("the server is shutting down".into())));
                }
            }
        }
        self.shared.ready.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = t.join();
        }
    }
}

/// Blocks for the next jobs to run: arrival order, up to `max_tokens` tokens (at least
/// one job). `None` once closed and drained.
fn next_batch(s: &Shared, max_tokens: usize, metrics: &Metrics) -> Option<Vec<Job>> {
    let mut q = s.lock();
    while q.jobs.is_empty() {
        if q.closed {
            return None;
        }
        q = s.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
    }
    let mut batch = Vec::new();
    let mut tokens = 0;
    while let Some(job) = q.jobs.front() {
        if !batch.is_empty() && tokens + job.tokens > max_tokens {
            break;
        }
        tokens += job.tokens;
        batch.push(q.jobs.pop_front().expect("front exists"));
    }
    metrics.queue_size.set(q.jobs.len() as i64);
    Some(batch)
}

fn run_batch(model: &Model, pool: &rayon::ThreadPool, batch: Vec<Job>, metrics: &Metrics) {
    let started = Instant::now();
    metrics.batch_inputs.observe(batch.iter().map(|j| j.seqs.len()).sum::<usize>() as f64);
    metrics.batch_tokens.observe(batch.iter().map(|j| j.tokens).sum::<usize>() as f64);
    for job in &batch {
        metrics.queue_duration.observe(started.duration_since(job.queued).as_secs_f64());
    }
    // Group by task, keeping arrival order within each group.
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in batch {
        match groups.iter_mut().find(|g| g[0].task == job.task) {
            Some(g) => g.push(job),
            None => groups.push(vec![job]),
        }
    }
    for group in groups {
        let seqs: Vec<Vec<u32>> = group.iter().flat_map(|j| j.seqs.iter().cloned()).collect();
        match compute(model, pool, &group[0].task, &seqs) {
            Ok(output) => {
                let sizes: Vec<usize> = group.iter().map(|j| j.seqs.len()).collect();
                for (job, out) in group.into_iter().zip(output.split(&sizes)) {
                    let _ = job.reply.send(Ok(out));
                }
            }
            // One job's input may have failed the group: give each job its own answer.
            Err(_) if group.len() > 1 => {
                for job in group {
                    let _ = job.reply.send(compute(model, pool, &job.task, &job.seqs));
                }
            }
            Err(e) => {
                let job = group.into_iter().next().expect("one job");
                let _ = job.reply.send(Err(e));
            }
        }
    }
    metrics.inference_duration.observe(started.elapsed().as_secs_f64());
}

/// One library call on the model's pool; a panic becomes a `Failure`, never a dead worker.
fn compute(model: &Model, pool: &rayon::ThreadPool, task: &Task, seqs: &[Vec<u32>]) -> Result<Output, Failure> {
    // AssertUnwindSafe: after a panic nothing the closure touched is used (the model is
    // read-only, scratch buffers are per call).
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.install(|| match task {
            Task::Embed(pooling) => Ok(Output::Vectors(model.embed_tokens(seqs, *pooling, false))),
            Task::HiddenStates(layers) => model.hidden_states_tokens(seqs, layers.as_deref()).map(Output::Hidden),
            Task::FillMask { top_k } => model.fill_mask_tokens(seqs, *top_k).map(Output::Masks),
            Task::Classify { function } => model.classify_tokens(seqs, *function, TopK::All).map(Output::Labels),
        })
    }));
    match result {
        Ok(r) => r.map_err(Failure::Rejected),
        Err(payload) => {
            let text = payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            Err(Failure::Panicked(text.unwrap_or("unknown panic").to_string()))
        }
    }
}

impl Output {
    /// Cuts one output over concatenated inputs into consecutive parts of `sizes` inputs.
    fn split(self, sizes: &[usize]) -> Vec<Output> {
        fn cut<T>(mut v: Vec<T>, sizes: &[usize]) -> Vec<Vec<T>> {
            let mut parts = Vec::with_capacity(sizes.len());
            for &n in sizes {
                let rest = v.split_off(n);
                parts.push(std::mem::replace(&mut v, rest));
            }
            parts
        }
        match self {
            Output::Vectors(v) => cut(v, sizes).into_iter().map(Output::Vectors).collect(),
            Output::Hidden(v) => cut(v, sizes).into_iter().map(Output::Hidden).collect(),
            Output::Masks(v) => cut(v, sizes).into_iter().map(Output::Masks).collect(),
            Output::Labels(v) => cut(v, sizes).into_iter().map(Output::Labels).collect(),
        }
    }
}
