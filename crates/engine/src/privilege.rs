//! Least-privilege use cases: the analysis over the ledger, what-if replay of a narrower grant,
//! shadow mode (proposed scopes checked on live traffic without enforcing them), applying a
//! narrower grant, and access-review confirmations. Every change is an audited admin action.

use std::collections::BTreeMap;
use std::time::Duration;

use insight::{Recorded, TokenPrivilege, Usage, WhatIf};
use jiff::SignedDuration;
use ledger::event::{Kind, Verdict};
use store::{EventQuery, Order, TokenQuery};
use token::{Reason, Scope, TokenRecord};

use crate::{Engine, EngineError, FieldError, Principal, RequestContext, Result};

fn parse_scopes(field: &str, scopes: &[String]) -> Result<Vec<Scope>> {
    if scopes.is_empty() {
        return Err(EngineError::Invalid(vec![FieldError::new(field, "at least one scope is required")]));
    }
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, s) in scopes.iter().enumerate() {
        match Scope::parse(s) {
            Ok(s) if !out.contains(&s) => out.push(s),
            Ok(_) => {}
            Err(e) => errors.push(FieldError::new(format!("{field}[{i}]"), e.to_string())),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(EngineError::Invalid(errors)) }
}

impl Engine {
    fn since(&self, window: Duration) -> jiff::Timestamp {
        let d = SignedDuration::try_from(window).unwrap_or(SignedDuration::ZERO);
        self.now().checked_sub(d).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// Every token, in creation order.
    pub fn all_tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_tokens(&TokenQuery {
                owner: None,
                scope: None,
                state: None,
                label: None,
                after,
                limit: 1000,
                now: self.now(),
            })?;
            out.extend(page.items);
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// Granted versus used for every token (or one owner's), with recommendations.
    pub fn least_privilege(
        &self,
        settings: &insight::Settings,
        owner: Option<&str>,
    ) -> Result<Vec<(TokenRecord, TokenPrivilege)>> {
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        for u in self.store.scope_usage(self.since(settings.window))? {
            let entry = usage.entry(u.token_id.clone()).or_default();
            entry.allowed += u.count;
            entry.last_used = entry.last_used.max(Some(u.last));
            if let Some(s) = u.scope.as_deref().and_then(|s| Scope::parse(s).ok()) {
                *entry.scopes.entry(s).or_default() += u.count;
            }
        }
        let now = self.now();
        let mut out = Vec::new();
        for t in self.all_tokens()? {
            if owner.is_some_and(|o| o != t.owner) {
                continue;
            }
            let mut u = usage.remove(&t.id).unwrap_or_default();
            // Use before the window still counts for "when was it last used".
            if u.last_used.is_none() {
                u.last_used = t.last_used_at;
            }
            let p = insight::analyse(&t, &u, now, settings);
            out.push((t, p));
        }
        Ok(out)
    }

    /// Replays a token's allowed requests of the window against proposed scopes.
    pub fn what_if(&self, id: &str, proposed: &[String], window: Duration) -> Result<WhatIf> {
        let proposed = parse_scopes("to", proposed)?;
        self.get_token(id)?;
        let mut recorded = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_events(&EventQuery {
                token_id: Some(id.to_owned()),
                kind: Some(Kind::Access),
                decision: Some(Verdict::Allow),
                since: Some(self.since(window)),
                after,
                order: Order::Asc,
                limit: 1000,
                ..Default::default()
            })?;
            for e in &page.items {
                if let Some(required) = e.required_scope.as_deref().and_then(|s| Scope::parse(s).ok()) {
                    recorded.push(Recorded {
                        event_id: e.id.clone(),
                        required,
                        route: e.route.clone().or_else(|| e.path.clone()).unwrap_or_default(),
                    });
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(insight::what_if(&proposed, &recorded))
    }

    fn change_grants(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        id: &str,
        op: &str,
        change: impl FnOnce(&mut TokenRecord),
        explanation: String,
    ) -> Result<TokenRecord> {
        let old = self.get_token(id)?;
        if old.revoked_at.is_some() {
            return Err(EngineError::Conflict {
                code: "token_revoked",
                message: format!("token {id} is revoked and cannot be changed"),
            });
        }
        let mut t = old.clone();
        change(&mut t);
        t.updated_at = self.now();
        t.revision = old.revision + 1;
        let list = |s: &[Scope]| s.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let mut e = self.admin_event_for(by, ctx, op, id)?;
        if old.scopes != t.scopes {
            e.details.insert("scopes".into(), format!("{} -> {}", list(&old.scopes), list(&t.scopes)));
        }
        if old.shadow_scopes != t.shadow_scopes {
            e.details
                .insert("shadow_scopes".into(), format!("{} -> {}", list(&old.shadow_scopes), list(&t.shadow_scopes)));
        }
        e.explanation = Some(explanation);
        self.store.update_token(&t, old.revision, &mut e)?;
        self.access.invalidate(id);
        Ok(t)
    }

    /// Shadow mode: records proposed scopes on the token; decisions keep using its real scopes,
    /// and every request the proposed ones would deny is flagged (event details and a
    /// `shadow_deny` finding). An empty list ends shadow mode.
    pub fn set_shadow(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        id: &str,
        proposed: &[String],
    ) -> Result<TokenRecord> {
        let proposed = if proposed.is_empty() { Vec::new() } else { parse_scopes("to", proposed)? };
        let text = proposed.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
        let explanation = if proposed.is_empty() {
            format!("ended shadow mode for token {id}")
        } else {
            format!("shadow mode for token {id}: flagging requests [{text}] would deny")
        };
        self.change_grants(by, ctx, id, "token.shadow", |t| t.shadow_scopes = proposed, explanation)
    }

    /// Switches a token to the proposed scopes (and ends its shadow mode).
    pub fn apply_scopes(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        id: &str,
        proposed: &[String],
    ) -> Result<TokenRecord> {
        let proposed = parse_scopes("to", proposed)?;
        let text = proposed.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
        self.change_grants(
            by,
            ctx,
            id,
            "token.narrow",
            |t| {
                t.scopes = proposed;
                t.shadow_scopes.clear();
            },
            format!("narrowed token {id} to [{text}]"),
        )
    }

    /// Records the outcome of an access review: the owner confirms the token is still needed as
    /// granted. Appears in the next compliance report.
    pub fn confirm_token(&self, by: &Principal, ctx: &RequestContext, id: &str, comment: &str) -> Result<()> {
        if comment.chars().count() > 1000 {
            return Err(EngineError::Invalid(vec![FieldError::new("comment", "at most 1000 characters")]));
        }
        let t = self.get_token(id)?;
        let mut e = self.admin_event_for(by, ctx, "token.confirm", id)?;
        e.details.insert("scopes".into(), t.scopes.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
        if !comment.is_empty() {
            e.details.insert("comment".into(), comment.to_owned());
        }
        e.explanation = Some(format!("confirmed token {id} ({}) in an access review", t.name));
        self.record_blocking(e)?;
        Ok(())
    }

    /// An admin event about a token, by `by`.
    pub(crate) fn admin_event_for(
        &self,
        by: &Principal,
        ctx: &RequestContext,
        op: &str,
        target: &str,
    ) -> Result<ledger::event::Event> {
        let mut e = self.new_event(Kind::Admin, "admin", Reason::Ok)?;
        Engine::fill_context(&mut e, ctx);
        e.token_id = Some(by.token_id.clone());
        e.owner = Some(by.owner.clone());
        e.resource = Some(token::scope::RESERVED_RESOURCE.to_owned());
        e.action = Some("admin".to_owned());
        e.required_scope = Some(Scope::tokentrail_admin().to_string());
        e.granted_scopes = by.scopes.iter().map(ToString::to_string).collect();
        e.operation = Some(op.to_owned());
        e.target = Some(target.to_owned());
        e.status = Some(200);
        Ok(e)
    }
}
