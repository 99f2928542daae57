//! The OpenAPI 3.1 document, generated from the handlers' annotations and the `proto` types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{access, audit, findings, health, ledger, reports, tokens};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tokentrail token with scope tokentrail:admin"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "tokentrail", description = "API token authority and access auditor: admin API."),
    paths(
        tokens::create, tokens::list, tokens::show, tokens::update, tokens::revoke, tokens::rotate,
        audit::list, audit::show, audit::explain, audit::stats, audit::stream, audit::export, audit::ingest, audit::activity,
        ledger::leaf, ledger::proof, ledger::consistency, ledger::checkpoint, ledger::sign_checkpoint, ledger::key,
        ledger::erase,
        access::verify, access::authz,
        findings::list, findings::show, findings::ack, findings::resolve,
        reports::least_privilege, reports::access_review, reports::compliance, reports::narrow, reports::confirm,
        health::healthz, health::readyz, health::metrics, health::openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tokens", description = "Issue and manage tokens"),
        (name = "audit", description = "Read the audit log"),
        (name = "ledger", description = "Checkpoints, proofs and erasure of the tamper-evident log"),
        (name = "reports", description = "Least privilege and compliance evidence"),
        (name = "findings", description = "What the detectors found"),
        (name = "access", description = "Decisions for services and proxies: verify and authz"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
