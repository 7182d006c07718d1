//! The admin HTTP port: `/status`, `/metrics` (Prometheus), `/nodes` (list, add, remove,
//! set weight) and `/sessions/count?node=`. JSON everywhere but `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::NodeConfig;
use crate::relay::Relay;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The relay.
    pub relay: Arc<Relay>,
    /// Process start.
    pub started: Instant,
    /// The access listening address.
    pub access_addr: std::net::SocketAddr,
}

/// The routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/nodes", get(nodes).post(add_node))
        .route("/nodes/{name}", axum::routing::delete(remove_node))
        .route("/nodes/{name}/weight", post(set_weight).put(set_weight))
        .route("/sessions/count", get(count))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "no such route; see /status, /metrics, /nodes, /sessions/count"}))) })
        .with_state(state)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn node_json(node: &crate::pool::PdfNode, sessions: usize) -> serde_json::Value {
    json!({
        "index": node.index,
        "name": node.name,
        "address": node.address.to_string(),
        "weight": node.weight(),
        "removed": node.is_removed(),
        "open_connections": node.open_connections(),
        "rebooting": node.rebooting().is_some(),
        "sessions": sessions,
    })
}

async fn status(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let relay = &state.relay;
    let (sessions, by_node, heap) = {
        let sessions = relay.sessions.lock().unwrap_or_else(|p| p.into_inner());
        (
            sessions.len(),
            sessions.count_by_node(),
            sessions.heap_bytes(),
        )
    };
    let nodes: Vec<_> = relay
        .pool
        .nodes()
        .iter()
        .map(|n| node_json(n, by_node.get(&n.index).copied().unwrap_or(0)))
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "access_addr": state.access_addr.to_string(),
        "sessions": sessions,
        "session_table_heap_bytes": heap,
        "nodes": nodes,
    }))
}

async fn metrics(State(state): State<AdminState>) -> Response {
    use std::fmt::Write;
    let relay = &state.relay;
    let mut out = String::new();
    relay.metrics.render(&mut out);
    let (sessions, by_node) = {
        let sessions = relay.sessions.lock().unwrap_or_else(|p| p.into_inner());
        (sessions.len(), sessions.count_by_node())
    };
    let _ = writeln!(out, "# HELP gateway_sessions Live sessions.\n# TYPE gateway_sessions gauge\ngateway_sessions {sessions}");
    let _ = writeln!(out, "# HELP gateway_node_sessions Live sessions per PDF node.\n# TYPE gateway_node_sessions gauge");
    for node in relay.pool.nodes() {
        let n = by_node.get(&node.index).copied().unwrap_or(0);
        let _ = writeln!(out, "gateway_node_sessions{{node=\"{}\"}} {n}", node.name);
    }
    let _ = writeln!(out, "# HELP gateway_node_connections Open connections per PDF node.\n# TYPE gateway_node_connections gauge");
    for node in relay.pool.nodes() {
        let _ = writeln!(
            out,
            "gateway_node_connections{{node=\"{}\"}} {}",
            node.name,
            node.open_connections()
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn nodes(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let by_node = state
        .relay
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .count_by_node();
    let nodes: Vec<_> = state
        .relay
        .pool
        .nodes()
        .iter()
        .map(|n| node_json(n, by_node.get(&n.index).copied().unwrap_or(0)))
        .collect();
    Json(json!({ "nodes": nodes }))
}

async fn add_node(State(state): State<AdminState>, Json(node): Json<NodeConfig>) -> Response {
    match state.relay.add_node(&node) {
        Ok(index) => (
            StatusCode::CREATED,
            Json(json!({"index": index, "name": node.name})),
        )
            .into_response(),
        Err(error) => (StatusCode::CONFLICT, Json(json!({"error": error}))).into_response(),
    }
}

async fn remove_node(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.relay.pool.remove(&name).await {
        Ok(()) => Json(json!({"removed": name})).into_response(),
        Err(error) => (StatusCode::NOT_FOUND, Json(json!({"error": error}))).into_response(),
    }
}

#[derive(Deserialize)]
struct Weight {
    weight: u32,
}

async fn set_weight(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Json(weight): Json<Weight>,
) -> Response {
    match state.relay.pool.set_weight(&name, weight.weight) {
        Ok(()) => Json(json!({"name": name, "weight": weight.weight})).into_response(),
        Err(error) => (StatusCode::NOT_FOUND, Json(json!({"error": error}))).into_response(),
    }
}

#[derive(Deserialize)]
struct CountQuery {
    node: Option<String>,
}

async fn count(State(state): State<AdminState>, Query(query): Query<CountQuery>) -> Response {
    let by_node = state
        .relay
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .count_by_node();
    match query.node {
        None => Json(json!({"sessions": by_node.values().sum::<usize>()})).into_response(),
        Some(name) => match state
            .relay
            .pool
            .nodes()
            .into_iter()
            .find(|n| n.name == name)
        {
            Some(node) => Json(
                json!({"node": name, "sessions": by_node.get(&node.index).copied().unwrap_or(0)}),
            )
            .into_response(),
            None => (
                StatusCode::NOT_FOUND,
                Json(json!({"error": format!("no node named {name:?}")})),
            )
                .into_response(),
        },
    }
}
