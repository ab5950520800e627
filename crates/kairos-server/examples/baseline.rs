//! The web framework's limit on this machine: a minimal actix-web server with
//! the same features and worker count as `kairos serve`, one route that parses
//! a small JSON body and answers a small JSON object. `scripts/load-decisions.sh`
//! measures Kairos's decisions against it in the same run.
//!
//!     cargo run --release -p kairos-server --example baseline -- 127.0.0.1:18282

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Ask {
    customer_id: String,
}

#[derive(Debug, Serialize)]
struct Answer<'a> {
    customer_id: &'a str,
    action: &'static str,
    score: f64,
}

async fn answer(body: web::Json<Ask>) -> HttpResponse {
    HttpResponse::Ok().json(Answer {
        customer_id: &body.customer_id,
        action: "send",
        score: 0.5,
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18282".into());
    HttpServer::new(|| App::new().route("/v1/decisions", web::post().to(answer)))
        .bind(bind)?
        .run()
        .await
}
