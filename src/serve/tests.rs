//! Unit tests of the server's insides that a client cannot reach: the health route once the
//! compute worker is gone, and a scheduler batch answering as each input alone.

use super::*;
use axum::extract::State;

fn options(model: PathBuf) -> Options {
    Options {
        model,
        host: "127.0.0.1".into(),
        port: 0,
        threads: Some(2),
        api_key: None,
        max_batch_tokens: 16384,
        max_concurrent_requests: 8,
        max_client_batch_size: 8,
        max_input_length: None,
        auto_truncate: false,
        payload_limit: 1 << 20,
        pooling: None,
        batch_size: 3,
        served_model_name: None,
        json_logs: false,
        shutdown_timeout: Duration::from_secs(5),
    }
}

fn tiny_gguf(dir: &std::path::Path) -> PathBuf {
    let output = dir.join("tiny.gguf");
    let model_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-xlmr-xl");
    xlmr::convert::convert(&xlmr::convert::ConvertOptions { model_dir, output: output.clone(), ty: xlmr::quant::GgmlType::Q8_0, progress: false }).unwrap();
    output
}

#[test]
fn health_is_503_once_the_worker_is_gone_and_jobs_fail_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let state = build_state(&options(tiny_gguf(dir.path()))).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(routes::health(State(state.clone())).await.is_ok());
        let ids = state.model.tokenize_all(&["x"], false).unwrap();
        assert!(state.worker.submit(worker::Task::Embed(Pooling::Mean), ids.clone(), &state.metrics).await.is_ok());
        state.worker.close(false);
        let err = routes::health(State(state.clone())).await.unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.error_type, ErrorType::Unhealthy);
        // A job for a dead worker is refused at once (a 500 to its client), not queued forever.
        assert!(state.worker.submit(worker::Task::Embed(Pooling::Mean), ids, &state.metrics).await.is_err());
    });
}

#[test]
fn jobs_batched_together_get_what_each_gets_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = build_state(&options(tiny_gguf(dir.path()))).unwrap();
    let texts = ["short", "a much longer input with many more tokens than the others", "mid length text here", "x <mask> y"];
    let seqs = state.model.tokenize_all(&texts, false).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let alone: Vec<_> = {
            let mut v = Vec::new();
            for s in &seqs {
                v.push(state.worker.submit(worker::Task::Embed(Pooling::None), vec![s.clone()], &state.metrics).await.unwrap());
            }
            v
        };
        // One job with all of them: one library call over the four, sorted by length and
        // run padded three at a time (batch size 3), as jobs joined by the scheduler run.
        let worker::Output::Vectors(together) = state.worker.submit(worker::Task::Embed(Pooling::None), seqs.clone(), &state.metrics).await.unwrap() else {
            panic!("vectors expected")
        };
        for (a, t) in alone.iter().zip(&together) {
            let worker::Output::Vectors(a) = a else { panic!("vectors expected") };
            assert_eq!(&a[0], t, "bit-identical per token");
        }
    });
    state.worker.close(false);
}

#[test]
fn a_panic_in_the_model_fails_its_job_only_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let state = build_state(&options(tiny_gguf(dir.path()))).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // A token id past the embedding table: the handlers refuse it (422), so only a bug
        // could send it; the library then panics on the out-of-range row.
        let bad = vec![vec![0, u32::MAX / 2, 2]];
        let failed = state.worker.submit(worker::Task::Embed(Pooling::Mean), bad, &state.metrics).await;
        assert!(matches!(failed, Err(worker::Failure::Panicked(_))), "{failed:?}");
        assert!(state.worker.alive());
        let ids = state.model.tokenize_all(&["still serving"], false).unwrap();
        assert!(state.worker.submit(worker::Task::Embed(Pooling::Mean), ids, &state.metrics).await.is_ok());
        assert!(routes::health(State(state.clone())).await.is_ok());
    });
    state.worker.close(false);
}
