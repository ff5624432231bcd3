//! Tickets (工单, spec 8.3.4.10): operations work, made by hand or from an alert, worked
//! through claimed → in progress → resolved → closed with comments and an assignee. Every
//! change is a history event, written in the same transaction as the change, and a change
//! made against a state that moved meanwhile is refused (409) rather than lost.

use chrono::Utc;
use stratus_api::*;
use uuid::Uuid;

use super::alerts::{may_write, require_scope_write, sees};
use crate::app::App;
use crate::authz::{Perm, Principal};
use crate::error::{Error, Result};
use crate::store::{Conds, Paging};

/// The moves a ticket may make.
fn allowed(from: TicketState, to: TicketState) -> bool {
    use TicketState::*;
    matches!(
        (from, to),
        (Open, Claimed)
            | (Open, InProgress)
            | (Open, Closed)
            | (Claimed, Open)
            | (Claimed, InProgress)
            | (Claimed, Closed)
            | (InProgress, Resolved)
            | (Resolved, InProgress)
            | (Resolved, Closed)
    )
}

async fn check_assignee(app: &App, a: &str) -> Result<()> {
    if app.store.user_get_by_name(a).await?.is_none() {
        return Err(Error::invalid(
            "assignee",
            &format!("no account is named {a:?}"),
        ));
    }
    Ok(())
}

fn check_text(field: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::invalid(field, &format!("at most {max} bytes")));
    }
    Ok(())
}

/// An open platform ticket by `p`, to be given its scope and details.
fn new_ticket(p: &Principal, title: String, description: String) -> Ticket {
    let now = Utc::now();
    Ticket {
        id: Uuid::new_v4(),
        title,
        description,
        state: TicketState::Open,
        priority: Severity::Major,
        assignee: None,
        alert_id: None,
        project_id: None,
        vdc_id: None,
        created_by: p.name.clone(),
        created_at: now,
        updated_at: now,
        resolved_at: None,
        closed_at: None,
        events: vec![],
    }
}

pub async fn create(app: &App, p: &Principal, b: TicketCreate) -> Result<Ticket> {
    let (project_id, vdc_id) = require_scope_write(app, p, b.project_id).await?;
    if b.title.trim().is_empty() {
        return Err(Error::invalid("title", "must not be empty"));
    }
    check_text("title", &b.title, 200)?;
    check_text("description", &b.description, 20_000)?;
    if let Some(a) = &b.assignee {
        check_assignee(app, a).await?;
    }
    let t = Ticket {
        priority: b.priority.unwrap_or(Severity::Major),
        assignee: b.assignee,
        project_id,
        vdc_id,
        ..new_ticket(p, b.title, b.description)
    };
    app.store.ticket_insert(&t).await?;
    get(app, p, t.id).await
}

/// A ticket from an alert: its summary, severity and project; the alert links to it.
pub async fn from_alert(app: &App, p: &Principal, alert: Uuid, b: AlertTicket) -> Result<Ticket> {
    let a = super::alerts::alert_get(app, p, alert).await?;
    if !may_write(app, p, a.project_id, a.vdc_id).await? {
        return Err(Error::forbidden(format!(
            "you may not make a ticket of alert {alert} (needs resource.write on its project, or alert.write)"
        )));
    }
    if let Some(t) = a.ticket_id {
        return Err(Error::conflict(format!(
            "alert {alert} already has ticket {t}"
        )));
    }
    check_text("description", &b.description, 20_000)?;
    if let Some(x) = &b.assignee {
        check_assignee(app, x).await?;
    }
    let mut title = format!("[{}] {}", a.name, a.summary);
    if title.len() > 200 {
        let mut end = 200;
        while !title.is_char_boundary(end) {
            end -= 1;
        }
        title.truncate(end);
    }
    let t = Ticket {
        priority: a.severity,
        assignee: b.assignee,
        alert_id: Some(alert),
        project_id: a.project_id,
        vdc_id: a.vdc_id,
        ..new_ticket(p, title, b.description)
    };
    app.store.ticket_insert(&t).await?;
    get(app, p, t.id).await
}

pub async fn get(app: &App, p: &Principal, id: Uuid) -> Result<Ticket> {
    let t = app
        .store
        .ticket_get(id)
        .await?
        .ok_or_else(|| Error::not_found("ticket", id))?;
    if !sees(app, p, t.project_id, t.vdc_id).await? {
        return Err(Error::not_found("ticket", id));
    }
    Ok(t)
}

async fn writable(app: &App, p: &Principal, id: Uuid) -> Result<Ticket> {
    let t = get(app, p, id).await?;
    if !may_write(app, p, t.project_id, t.vdc_id).await? {
        return Err(Error::forbidden(format!(
            "you may not change ticket {id} (needs resource.write on its project, or alert.write)"
        )));
    }
    Ok(t)
}

pub async fn list(
    app: &App,
    p: &Principal,
    q: ListParams,
    f: TicketFilter,
) -> Result<Page<Ticket>> {
    let paging = Paging::parse(
        Some(q.sort.as_deref().unwrap_or("-created_at")),
        q.limit,
        q.next.as_deref(),
        &["created_at"],
    )?;
    let mut c = Conds::new();
    crate::store::resource_visible(&mut c, &p.visibility(Perm::ResourceRead), "");
    if let Some(s) = f.state {
        c.and("state = ?", [s.as_str().into()]);
    }
    if let Some(a) = &f.assignee {
        c.and("assignee = ?", [a.as_str().into()]);
    }
    if let Some(pid) = f.project_id {
        c.and("project_id = ?", [pid.into()]);
    }
    if f.open == Some(true) {
        c.and("state <> 'closed'", []);
    }
    if let Some(n) = &q.name {
        c.and("title LIKE ? ESCAPE '\\'", [crate::store::like_contains(n)]);
    }
    let (items, next) = app.store.ticket_list(&mut c, &paging).await?;
    Ok(Page { items, next })
}

/// Move a ticket; claiming (or starting) an unassigned ticket assigns it to the caller.
pub async fn transition(app: &App, p: &Principal, id: Uuid, b: TicketTransition) -> Result<Ticket> {
    let mut t = writable(app, p, id).await?;
    check_text("comment", &b.comment, 20_000)?;
    let from = t.state;
    if !allowed(from, b.state) {
        return Err(Error::conflict(format!(
            "a ticket that is {} cannot become {}",
            from.as_str(),
            b.state.as_str()
        )));
    }
    let now = Utc::now();
    let mut events = vec![("state", b.state.as_str().to_string())];
    if matches!(b.state, TicketState::Claimed | TicketState::InProgress) && t.assignee.is_none() {
        t.assignee = Some(p.name.clone());
        events.push(("assignee", p.name.clone()));
    }
    if b.state == TicketState::Open {
        t.assignee = None;
        events.push(("assignee", String::new()));
    }
    t.state = b.state;
    t.updated_at = now;
    match b.state {
        TicketState::Resolved => t.resolved_at = Some(now),
        TicketState::InProgress => t.resolved_at = None,
        TicketState::Closed => t.closed_at = Some(now),
        _ => {}
    }
    if !b.comment.is_empty() {
        events.push(("comment", b.comment));
    }
    app.store.ticket_change(&t, from, &p.name, &events).await?;
    get(app, p, id).await
}

pub async fn update(app: &App, p: &Principal, id: Uuid, b: TicketUpdate) -> Result<Ticket> {
    let mut t = writable(app, p, id).await?;
    if t.state == TicketState::Closed {
        return Err(Error::conflict(format!("ticket {id} is closed")));
    }
    let mut events = vec![];
    if let Some(a) = b.assignee {
        if a.is_empty() {
            t.assignee = None;
        } else {
            check_assignee(app, &a).await?;
            t.assignee = Some(a.clone());
        }
        events.push(("assignee", a));
    }
    if let Some(pr) = b.priority {
        t.priority = pr;
        events.push(("priority", pr.as_str().to_string()));
    }
    t.updated_at = Utc::now();
    app.store
        .ticket_change(&t, t.state, &p.name, &events)
        .await?;
    get(app, p, id).await
}

pub async fn comment(app: &App, p: &Principal, id: Uuid, b: TicketComment) -> Result<Ticket> {
    let mut t = writable(app, p, id).await?;
    if b.body.trim().is_empty() {
        return Err(Error::invalid("body", "must not be empty"));
    }
    check_text("body", &b.body, 20_000)?;
    t.updated_at = Utc::now();
    app.store
        .ticket_change(&t, t.state, &p.name, &[("comment", b.body)])
        .await?;
    get(app, p, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_moves_only_forward_or_back_into_progress() {
        use TicketState::*;
        assert!(allowed(Open, Claimed));
        assert!(allowed(InProgress, Resolved));
        assert!(allowed(Resolved, InProgress));
        assert!(allowed(Resolved, Closed));
        for (a, b) in [
            (Closed, InProgress),
            (Closed, Open),
            (Open, Resolved),
            (InProgress, Closed),
        ] {
            assert!(!allowed(a, b), "{a:?} -> {b:?}");
        }
    }
}
