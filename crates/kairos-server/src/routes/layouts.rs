//! `GET /v1/layouts/{page}`: a page of slots, each filled for the visitor
//! by conditions on what Kairos knows of them, by an experiment or bandit,
//! or by ranking candidates on their category affinity. Pages are defined
//! in `layouts.dir` (one `<page>.toml` each); browsers on the configured
//! origins may fetch them (CORS). `GET /demo/` renders one.

use std::collections::BTreeMap;
use std::path::Path;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use kairos_core::CustomerId;
use kairos_experiments::{eval_condition, SavedGroups};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Scope;
use crate::error::{ApiError, ErrorResponse};
use crate::openapi::{KeyErrors, StoreErrors};
use crate::routes::customers::customer_id;
use crate::routes::experiments::{assign_customer, condition_attributes};
use crate::state::AppState;

/// One rule: the component to show when the condition holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub condition: Value,
    pub component: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDef {
    pub key: String,
    /// The first rule whose condition holds picks the component ...
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// ... or an experiment's variant, mapped to a component (the variant's
    /// key when unmapped) ...
    #[serde(default)]
    pub experiment: Option<String>,
    #[serde(default)]
    pub components: BTreeMap<String, String>,
    /// ... or the candidate category the visitor likes best, shown as
    /// `component_prefix` + category.
    #[serde(default)]
    pub rank: Vec<String>,
    #[serde(default)]
    pub component_prefix: String,
    /// Shown when nothing above picks one.
    pub default: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageDef {
    pub slots: Vec<SlotDef>,
}

/// The pages of `dir`, by name; errors name the file.
pub fn load(dir: &Path) -> Result<BTreeMap<String, PageDef>, String> {
    let mut pages = BTreeMap::new();
    for (name, path, text) in crate::config::toml_files(dir)? {
        let page: PageDef =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (i, s) in page.slots.iter().enumerate() {
            let kinds = usize::from(!s.rules.is_empty())
                + usize::from(s.experiment.is_some())
                + usize::from(!s.rank.is_empty());
            if kinds > 1 {
                return Err(format!(
                    "{}: slots[{i}] ({}): use one of rules, experiment or rank",
                    path.display(),
                    s.key
                ));
            }
            if let Some(r) = s.rules.iter().find(|r| !r.condition.is_object()) {
                return Err(format!(
                    "{}: slots[{i}] ({}): the condition for {:?} must be a table",
                    path.display(),
                    s.key,
                    r.component
                ));
            }
        }
        pages.insert(name, page);
    }
    Ok(pages)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotView {
    pub key: String,
    pub component: String,
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LayoutView {
    pub page: String,
    pub customer_id: String,
    pub slots: Vec<SlotView>,
    /// Filled without what Kairos knows of the visitor: the store was unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct LayoutQuery {
    pub customer_id: String,
}

/// The page's slots for `id`; `degraded` (the store is unreachable): from
/// nothing but the page, touching no store.
async fn fill(
    state: &AppState,
    id: &CustomerId,
    page: &PageDef,
    degraded: bool,
) -> Result<Vec<SlotView>, ApiError> {
    let record = match degraded {
        true => None,
        false => state.store.customer(id).await?,
    };
    let attrs = condition_attributes(id, record.clone(), None);
    let affinity: BTreeMap<String, f64> = attrs
        .pointer("/learned_traits/category_affinity")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let groups = SavedGroups::new();
    let mut out = Vec::with_capacity(page.slots.len());
    for slot in &page.slots {
        let (component, reason) = if !slot.rules.is_empty() {
            match slot
                .rules
                .iter()
                .enumerate()
                .find(|(_, r)| eval_condition(&attrs, &r.condition, &groups))
            {
                Some((i, r)) => (r.component.clone(), format!("rule {} matched", i + 1)),
                None => (slot.default.clone(), "default: no rule matched".to_owned()),
            }
        } else if let (Some(exp), true) = (&slot.experiment, degraded) {
            (
                slot.default.clone(),
                format!("default: the store is unreachable, so no variant of {exp}"),
            )
        } else if let Some(exp) = &slot.experiment {
            match assign_customer(state, exp, id, record.clone(), None, state.now()).await {
                Ok(a) => match a.variant {
                    Some(v) => (
                        slot.components
                            .get(&v)
                            .cloned()
                            .unwrap_or_else(|| v.clone()),
                        format!("experiment {exp}: variant {v} ({})", a.reason),
                    ),
                    None => (
                        slot.default.clone(),
                        format!("default: not in experiment {exp} ({})", a.reason),
                    ),
                },
                Err(e) if e.code == "experiment_not_found" => (
                    slot.default.clone(),
                    format!("default: experiment {exp} is not defined"),
                ),
                Err(e) => return Err(e),
            }
        } else if !slot.rank.is_empty() {
            let best = slot
                .rank
                .iter()
                .filter_map(|c| affinity.get(c).map(|a| (c, *a)))
                .filter(|(_, a)| *a > 0.0)
                .fold(None::<(&String, f64)>, |best, (c, a)| match best {
                    Some((_, b)) if b >= a => best,
                    _ => Some((c, a)),
                });
            match best {
                Some((c, a)) => (
                    format!("{}{c}", slot.component_prefix),
                    format!("highest category affinity: {c} ({:.0}%)", a * 100.0),
                ),
                None => (
                    slot.default.clone(),
                    "default: no affinity for any candidate".to_owned(),
                ),
            }
        } else {
            (slot.default.clone(), "default".to_owned())
        };
        out.push(SlotView {
            key: slot.key.clone(),
            component,
            reason,
        });
    }
    Ok(out)
}

/// The CORS origin to allow for this request, if any.
fn allowed_origin(req: &HttpRequest, state: &AppState) -> Option<String> {
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    let allowed = &state.config.raw.layouts.cors_origins;
    allowed
        .iter()
        .any(|a| a == "*" || a == origin)
        .then(|| origin.to_owned())
}

fn with_cors(mut resp: HttpResponse, origin: Option<String>) -> HttpResponse {
    let headers = resp.headers_mut();
    headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
    if let Some(o) = origin.and_then(|o| header::HeaderValue::from_str(&o).ok()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    resp
}

/// The page's slots, filled for the visitor.
#[utoipa::path(get, path = "/v1/layouts/{page}", tag = "layouts",
    params(
        ("page" = String, Path, description = "A page of layouts.dir"),
        ("customer_id" = String, Query, description = "The visitor"),
    ),
    responses(
        (status = 200, description = "The slots, each with its component and why (`Cache-Control: private`)", body = LayoutView),
        (status = 400, description = "Invalid customer id", body = ErrorResponse),
        (status = 404, description = "No such page", body = ErrorResponse),
        KeyErrors, StoreErrors,
    ),
    security(("api_key" = ["read"]), ()))]
pub async fn get_layout(
    req: HttpRequest,
    path: web::Path<String>,
    query: Result<web::Query<LayoutQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let origin = allowed_origin(&req, &state);
    let answer = async {
        crate::auth::authorize(&req, &state, Scope::Read)?;
        let query = query.map_err(|_| {
            ApiError::bad_request("invalid_field", "customer_id: required in the query string")
        })?;
        let name = path.into_inner();
        let page = state.layouts.get(&name).ok_or_else(|| {
            ApiError::not_found("page_not_found", format!("no layout page {name:?}"))
        })?;
        let id = customer_id(query.into_inner().customer_id)?;
        let (slots, degraded) = match fill(&state, &id, page, false).await {
            Err(e) if e.code == "store_unavailable" => {
                (fill(&state, &id, page, true).await?, Some(true))
            }
            other => (other?, None),
        };
        Ok::<_, ApiError>(
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "private, no-store"))
                .json(LayoutView {
                    page: name,
                    customer_id: id.to_string(),
                    slots,
                    degraded,
                }),
        )
    }
    .await;
    let resp = match answer {
        Ok(r) => r,
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    Ok(with_cors(resp, origin))
}

/// CORS preflight for browsers on the configured origins.
pub async fn preflight(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let origin = allowed_origin(&req, &state);
    let mut resp = HttpResponse::NoContent();
    if origin.is_some() {
        resp.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, OPTIONS"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
    }
    with_cors(resp.finish(), origin)
}

const DEMO: &str = include_str!("../../demo/index.html");

/// A page that renders a layout in the browser.
pub async fn demo() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(DEMO)
}
