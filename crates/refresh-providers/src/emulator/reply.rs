//! Building answers: the providers' error shapes and the fault answers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::faults::{Fault, FaultKind};
use super::server::ConnControl;
use super::state::Shared;

/// A JSON answer.
pub(crate) fn json(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// An HTML answer.
pub(crate) fn html(status: u16, body: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        body.to_owned(),
    )
        .into_response()
}

/// RFC 6749's flat shape (Claude, Google's token endpoint).
pub(crate) fn flat_error(status: u16, code: &str, description: &str) -> Response {
    json(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

/// OpenAI's nested shape.
pub(crate) fn openai_error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}),
    )
}

/// Google APIs' nested shape (Code Assist, Drive, Resource Manager).
pub(crate) fn google_api_error(status: u16, message: &str, reason: &str) -> Response {
    json(
        status,
        &json!({"error": {"code": status, "message": message, "status": reason}}),
    )
}

/// Counts the request, applies a queued or random fault (before or after
/// `process`, as the fault says) and the latency.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    control: &ConnControl,
    path: &str,
    process: impl FnOnce() -> Response,
) -> Response {
    shared.count_request(path);
    let fault = shared.take_fault(path);
    let answer = match &fault {
        Some(Fault {
            processed: false, ..
        }) => None,
        _ => Some(process()),
    };
    let delay = shared.latency().sample();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match (fault, answer) {
        (
            Some(Fault {
                kind: FaultKind::DropField { field },
                ..
            }),
            Some(answer),
        ) => drop_field(answer, &field).await,
        (Some(fault), _) => fault_answer(shared, control, fault.kind).await,
        (None, Some(answer)) => answer,
        (None, None) => html(500, "<html><body>emulator: no answer</body></html>"),
    }
}

async fn fault_answer(shared: &Arc<Shared>, control: &ConnControl, kind: FaultKind) -> Response {
    match kind {
        FaultKind::ServerError => html(
            503,
            "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1></body></html>",
        ),
        FaultKind::RateLimited { retry_after } => {
            let mut answer = flat_error(429, "rate_limit_exceeded", "Too many requests");
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                answer.headers_mut().insert(header::RETRY_AFTER, value);
            }
            answer
        }
        FaultKind::Hang => std::future::pending().await,
        FaultKind::Reset => {
            control.reset();
            std::future::pending().await
        }
        FaultKind::MalformedJson => {
            json_text(200, r#"{"access_token":"at-cut-off","expires_in":36"#)
        }
        FaultKind::HtmlError => html(
            502,
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
        ),
        FaultKind::Oversized {
            bytes,
            announce_length,
        } => oversized(Arc::clone(shared), bytes, announce_length),
        // Unprocessed: there is no answer to cut a field from.
        FaultKind::DropField { .. } => html(500, "<html><body>emulator: no answer</body></html>"),
    }
}

/// `answer` with the top-level `field` removed from its JSON body (a
/// non-JSON body is left as it is).
async fn drop_field(answer: Response, field: &str) -> Response {
    let (mut parts, body) = answer.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return html(500, "<html><body>emulator: no answer</body></html>");
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(map) = value.as_object_mut() {
        map.remove(field);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(value.to_string()))
}

fn json_text(status: u16, text: &'static str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Size of each streamed chunk of an oversized body.
const OVERSIZED_CHUNK: usize = 64 * 1024;

/// A `200` JSON-looking body of `bytes` bytes, streamed chunk by chunk;
/// the emulator counts what it handed to the connection and when the body
/// ended (finished, or dropped when the client closed).
fn oversized(shared: Arc<Shared>, bytes: u64, announce_length: bool) -> Response {
    struct Ended(Arc<Shared>);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.oversized_ended();
        }
    }
    const START: &[u8] = br#"{"access_token":"at-oversized","pad":""#;
    let state = (Ended(shared), 0_u64);
    let stream = futures_util::stream::unfold(state, move |(ended, sent)| async move {
        if sent >= bytes {
            return None;
        }
        let chunk = if sent == 0 {
            Bytes::from_static(START)
        } else {
            let n = (bytes - sent).min(OVERSIZED_CHUNK as u64) as usize;
            Bytes::from(vec![b'x'; n])
        };
        let chunk = chunk.slice(..chunk.len().min((bytes - sent) as usize));
        ended.0.oversized_sent(chunk.len() as u64);
        let sent = sent + chunk.len() as u64;
        Some((Ok::<_, std::io::Error>(chunk), (ended, sent)))
    });
    let mut answer = Response::new(Body::from_stream(stream));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if announce_length {
        answer
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    }
    answer
}
