//! Identity and tenancy through the real HTTP API: logins and sessions, the VDC tree,
//! visibility (404 outside your scope), grant inheritance and separation of duties.

mod common;

use common::*;
use serde_json::{json, Value};
use stratus_client::{Auth, Client};

#[tokio::test]
async fn login_whoami_logout_revokes_the_token() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let me: Value = admin.get("/v1/auth/whoami", &[]).await.unwrap();
    assert_eq!(me["user"]["name"], "admin");
    assert_eq!(me["grants"][0]["role"], "platform_admin");
    let _: Value = admin
        .call(reqwest::Method::POST, "/v1/auth/logout", &[], None::<&()>)
        .await
        .unwrap();
    assert_eq!(
        status(admin.get::<Value>("/v1/auth/whoami", &[]).await),
        401
    );
    // Wrong password and unknown user answer the same way.
    let a = ts.anon();
    let e1 = a
        .post::<Value>(
            "/v1/auth/login",
            &json!({"name": "admin", "password": "nope"}),
        )
        .await
        .unwrap_err();
    let e2 = a
        .post::<Value>(
            "/v1/auth/login",
            &json!({"name": "ghost", "password": "nope"}),
        )
        .await
        .unwrap_err();
    assert_eq!((e1.status, e2.status), (401, 401));
    assert_eq!(e1.message, e2.message);
    assert_eq!(
        status(
            Client::new(&ts.url, Auth::Token("st_forged".into()))
                .get::<Value>("/v1/auth/whoami", &[])
                .await
        ),
        401
    );
    ts.stop().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_account_until_unlocked() {
    let ts = TestServer::start().await;
    let sec = ts.secadmin().await;
    let t = tree(&ts.admin().await, "org").await;
    let (uid, _) = user_with_role(&ts, &sec, "zhangsan", Some(&t.child), None).await;
    let a = ts.anon();
    for _ in 0..4 {
        let e = a
            .post::<Value>(
                "/v1/auth/login",
                &json!({"name": "zhangsan", "password": "wrong"}),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status, 401);
    }
    let e = a
        .post::<Value>(
            "/v1/auth/login",
            &json!({"name": "zhangsan", "password": "wrong"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 423, "fifth failure locks (default policy: 5)");
    // Even the right password is refused while locked.
    let e = a
        .post::<Value>(
            "/v1/auth/login",
            &json!({"name": "zhangsan", "password": USER_PW}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 423);
    let u: Value = sec.get(&format!("/v1/users/{uid}"), &[]).await.unwrap();
    assert_eq!(u["locked"], true);
    let _: Value = sec
        .call(
            reqwest::Method::POST,
            &format!("/v1/users/{uid}/unlock"),
            &[],
            None::<&()>,
        )
        .await
        .unwrap();
    ts.login("zhangsan", USER_PW).await;
    ts.stop().await;
}

#[tokio::test]
async fn disabling_a_user_or_resetting_the_password_ends_their_sessions() {
    let ts = TestServer::start().await;
    let sec = ts.secadmin().await;
    let t = tree(&ts.admin().await, "org").await;
    let (uid, user) = user_with_role(
        &ts,
        &sec,
        "lisi",
        Some(&t.child),
        Some(("viewer", "vdc", &t.child)),
    )
    .await;
    let _: Value = user.get("/v1/auth/whoami", &[]).await.unwrap();
    let _: Value = sec
        .patch(&format!("/v1/users/{uid}"), &json!({"enabled": false}))
        .await
        .unwrap();
    assert_eq!(status(user.get::<Value>("/v1/auth/whoami", &[]).await), 401);
    assert_eq!(
        status(
            ts.anon()
                .post::<Value>(
                    "/v1/auth/login",
                    &json!({"name": "lisi", "password": USER_PW})
                )
                .await
        ),
        401
    );
    let _: Value = sec
        .patch(&format!("/v1/users/{uid}"), &json!({"enabled": true}))
        .await
        .unwrap();
    let user = ts.login("lisi", USER_PW).await;
    let _: Value = sec
        .call(
            reqwest::Method::POST,
            &format!("/v1/users/{uid}/password"),
            &[],
            Some(&json!({"password": "Another-Passw0rd"})),
        )
        .await
        .unwrap();
    assert_eq!(status(user.get::<Value>("/v1/auth/whoami", &[]).await), 401);
    ts.login("lisi", "Another-Passw0rd").await;
    // Weak passwords are refused with the rule that failed.
    let e = sec
        .call::<Value>(
            reqwest::Method::POST,
            &format!("/v1/users/{uid}/password"),
            &[],
            Some(&json!({"password": "short"})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.message.starts_with("password: must be at least 10"),
        "{}",
        e.message
    );
    ts.stop().await;
}

#[tokio::test]
async fn users_change_their_own_password() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let e = admin
        .call::<Value>(
            reqwest::Method::POST,
            "/v1/auth/password",
            &[],
            Some(&json!({"current_password": "bad", "new_password": "Newer-Passw0rd"})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.status, e.message.as_str()),
        (400, "current_password: is wrong")
    );
    let _: Value = admin
        .call(
            reqwest::Method::POST,
            "/v1/auth/password",
            &[],
            Some(&json!({"current_password": ADMIN_PW, "new_password": "Newer-Passw0rd"})),
        )
        .await
        .unwrap();
    assert_eq!(
        status(admin.get::<Value>("/v1/auth/whoami", &[]).await),
        401
    );
    ts.login("admin", "Newer-Passw0rd").await;
    ts.stop().await;
}

#[tokio::test]
async fn vdc_tree_of_six_levels_moves_and_refuses_cycles() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let org: Value = admin
        .post(
            "/v1/organizations",
            &json!({"name": "广东省政务服务数据管理局"}),
        )
        .await
        .unwrap();
    let mut chain = vec![];
    let mut parent: Option<String> = None;
    for level in 1..=6 {
        let body = match &parent {
            None => json!({"org_id": id(&org), "name": format!("第{level}级")}),
            Some(p) => json!({"parent_id": p, "name": format!("第{level}级")}),
        };
        let v: Value = admin.post("/v1/vdcs", &body).await.unwrap();
        assert_eq!(v["level"], level);
        parent = Some(id(&v));
        chain.push(id(&v));
    }
    // A project deep down counts against every ancestor's `projects` usage.
    let _: Value = admin
        .post("/v1/projects", &json!({"vdc_id": chain[5], "name": "p"}))
        .await
        .unwrap();
    let q: Value = admin
        .get(&format!("/v1/vdcs/{}/quota", chain[0]), &[])
        .await
        .unwrap();
    let used = q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == "projects")
        .unwrap()["used"]
        .clone();
    assert_eq!(used, 1);
    // Moving level 2 under its own descendant is a cycle.
    let e = admin
        .patch::<Value>(
            &format!("/v1/vdcs/{}", chain[1]),
            &json!({"parent_id": chain[4]}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.starts_with("parent_id:"), "{}", e.message);
    // Move level 4 (with its subtree and project) directly under level 1.
    let moved: Value = admin
        .patch(
            &format!("/v1/vdcs/{}", chain[3]),
            &json!({"parent_id": chain[0]}),
        )
        .await
        .unwrap();
    assert_eq!(moved["level"], 2);
    let deepest: Value = admin
        .get(&format!("/v1/vdcs/{}", chain[5]), &[])
        .await
        .unwrap();
    assert_eq!(deepest["level"], 4);
    let q: Value = admin
        .get(&format!("/v1/vdcs/{}/quota", chain[1]), &[])
        .await
        .unwrap();
    let used = q["levels"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource"] == "projects")
        .unwrap()["used"]
        .clone();
    assert_eq!(
        used, 0,
        "the old ancestor no longer counts the moved project"
    );
    // A non-empty VDC cannot be deleted; an empty one can; so can an org once empty.
    let e = admin
        .delete(&format!("/v1/vdcs/{}", chain[0]))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    admin
        .delete(&format!("/v1/vdcs/{}", chain[2]))
        .await
        .unwrap();
    assert_eq!(
        status(
            admin
                .delete(&format!("/v1/organizations/{}", id(&org)))
                .await
        ),
        409
    );
    let report: Value = admin
        .get("/v1/system/quota-consistency", &[])
        .await
        .unwrap();
    assert_eq!(report["mismatches"], json!([]));
    ts.stop().await;
}

#[tokio::test]
async fn tenants_see_only_their_subtree_and_get_404_elsewhere() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let a = tree(&admin, "A局").await;
    let b = tree(&admin, "B局").await;
    let (_, a_admin) = user_with_role(
        &ts,
        &sec,
        "a-admin",
        Some(&a.top),
        Some(("vdc_admin", "vdc", &a.top)),
    )
    .await;
    let (_, a_member) = user_with_role(
        &ts,
        &sec,
        "a-member",
        Some(&a.child),
        Some(("member", "project", &a.project)),
    )
    .await;

    // The VDC admin of A sees A's VDCs and projects, inherited downward, and nothing of B.
    let vdcs: Value = a_admin.get("/v1/vdcs", &[]).await.unwrap();
    let ids: Vec<String> = vdcs["items"].as_array().unwrap().iter().map(id).collect();
    assert!(
        ids.contains(&a.top) && ids.contains(&a.child) && !ids.contains(&b.top),
        "{ids:?}"
    );
    let projects: Value = a_admin.get("/v1/projects", &[]).await.unwrap();
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        status(
            a_admin
                .get::<Value>(&format!("/v1/vdcs/{}", b.top), &[])
                .await
        ),
        404
    );
    assert_eq!(
        status(
            a_admin
                .get::<Value>(&format!("/v1/projects/{}", b.project), &[])
                .await
        ),
        404
    );
    assert_eq!(
        status(a_admin.delete(&format!("/v1/projects/{}", b.project)).await),
        404
    );
    assert_eq!(
        status(
            a_admin
                .get::<Value>(&format!("/v1/organizations/{}", b.org), &[])
                .await
        ),
        404
    );
    let orgs: Value = a_admin.get("/v1/organizations", &[]).await.unwrap();
    assert_eq!(orgs["items"].as_array().unwrap().len(), 1);
    // It can build below its own VDC but cannot delete or re-parent the VDC it administers.
    let sub: Value = a_admin
        .post("/v1/vdcs", &json!({"parent_id": a.child, "name": "科室"}))
        .await
        .unwrap();
    assert_eq!(sub["level"], 3);
    assert_eq!(
        status(a_admin.delete(&format!("/v1/vdcs/{}", a.top)).await),
        403
    );
    assert_eq!(
        status(
            a_admin
                .post::<Value>("/v1/vdcs", &json!({"org_id": a.org, "name": "x"}))
                .await
        ),
        403
    );
    // Users: it manages users in its subtree only.
    let u: Value = a_admin
        .post(
            "/v1/users",
            &json!({"name": "a-staff", "password": USER_PW, "vdc_id": a.child}),
        )
        .await
        .unwrap();
    assert_eq!(
        status(
            a_admin
                .post::<Value>(
                    "/v1/users",
                    &json!({"name": "b-staff", "password": USER_PW, "vdc_id": b.child})
                )
                .await
        ),
        404
    );
    let users: Value = a_admin.get("/v1/users", &[]).await.unwrap();
    let names: Vec<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"a-staff") && !names.contains(&"admin"),
        "{names:?}"
    );
    // A project member sees its project but not the VDC's other projects, and may not delete it.
    let _: Value = admin
        .post("/v1/projects", &json!({"vdc_id": a.child, "name": "other"}))
        .await
        .unwrap();
    let projects: Value = a_member.get("/v1/projects", &[]).await.unwrap();
    assert_eq!(projects["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        status(
            a_member
                .delete(&format!("/v1/projects/{}", a.project))
                .await
        ),
        403
    );
    assert_eq!(
        status(
            a_member
                .get::<Value>(&format!("/v1/users/{}", id(&u)), &[])
                .await
        ),
        404
    );
    ts.stop().await;
}

#[tokio::test]
async fn separation_of_duties_between_admin_security_admin_and_auditor() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let sec = ts.secadmin().await;
    let aud = ts.auditor().await;
    let t = tree(&admin, "org").await;
    // The platform admin builds structure but cannot create accounts, grant roles or read the audit log.
    assert_eq!(
        status(
            admin
                .post::<Value>("/v1/users", &json!({"name": "x1", "password": USER_PW}))
                .await
        ),
        403
    );
    assert_eq!(
        status(admin.get::<Value>("/v1/audit-events", &[]).await),
        403
    );
    // The security admin manages accounts but cannot build structure or read the audit log.
    assert_eq!(
        status(
            sec.post::<Value>("/v1/organizations", &json!({"name": "x"}))
                .await
        ),
        403
    );
    assert_eq!(
        status(
            sec.post::<Value>("/v1/projects", &json!({"vdc_id": t.child, "name": "x"}))
                .await
        ),
        403
    );
    assert_eq!(status(sec.get::<Value>("/v1/audit-events", &[]).await), 403);
    // The auditor reads the log and changes nothing.
    let _: Value = aud.get("/v1/audit-events", &[]).await.unwrap();
    assert_eq!(
        status(
            aud.post::<Value>("/v1/organizations", &json!({"name": "x"}))
                .await
        ),
        403
    );
    assert_eq!(
        status(
            aud.post::<Value>("/v1/users", &json!({"name": "x2", "password": USER_PW}))
                .await
        ),
        403
    );
    // Nobody grants themselves a role, and one person holds at most one of the three.
    let me: Value = sec.get("/v1/auth/whoami", &[]).await.unwrap();
    let sec_id = me["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        status(
            sec.post::<Value>(
                "/v1/grants",
                &json!({"user_id": sec_id, "role": "auditor", "scope_type": "platform"})
            )
            .await
        ),
        403
    );
    let staff: Value = sec
        .post("/v1/users", &json!({"name": "ops1", "password": USER_PW}))
        .await
        .unwrap();
    let _: Value = sec
        .post(
            "/v1/grants",
            &json!({"user_id": id(&staff), "role": "auditor", "scope_type": "platform"}),
        )
        .await
        .unwrap();
    let e = sec
        .post::<Value>(
            "/v1/grants",
            &json!({"user_id": id(&staff), "role": "security_admin", "scope_type": "platform"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, 409);
    // Platform roles are for platform staff only, not for department users.
    let dept: Value = sec
        .post(
            "/v1/users",
            &json!({"name": "dept1", "password": USER_PW, "vdc_id": t.child}),
        )
        .await
        .unwrap();
    let e = sec
        .post::<Value>(
            "/v1/grants",
            &json!({"user_id": id(&dept), "role": "platform_admin", "scope_type": "platform"}),
        )
        .await
        .unwrap_err();
    assert_eq!((e.status, e.message.starts_with("user_id:")), (400, true));
    let e = sec.post::<Value>("/v1/grants", &json!({"user_id": id(&dept), "role": "vdc_admin", "scope_type": "project", "scope_id": t.project})).await.unwrap_err();
    assert!(e.message.starts_with("scope_type:"), "{}", e.message);
    ts.stop().await;
}

#[tokio::test]
async fn signed_requests_with_access_keys() {
    let ts = TestServer::start().await;
    let admin = ts.admin().await;
    let created: Value = admin
        .post("/v1/access-keys", &json!({"description": "ci"}))
        .await
        .unwrap();
    let ak = created["access_key"]["id"].as_str().unwrap().to_string();
    let sk = created["secret_access_key"].as_str().unwrap().to_string();
    assert!(ak.starts_with("AK") && sk.len() >= 40);
    let signed = Client::new(
        &ts.url,
        Auth::Key {
            access_key: ak.clone(),
            secret_key: sk.clone(),
            region: "gd-1".into(),
        },
    );
    let me: Value = signed
        .get("/v1/auth/whoami", &[("x", "a b/c".into())])
        .await
        .unwrap();
    assert_eq!(me["auth_method"], "access_key");
    let org: Value = signed
        .post("/v1/organizations", &json!({"name": "signed org"}))
        .await
        .unwrap();
    assert_eq!(org["name"], "signed org");
    // The secret is never shown again.
    let keys: Value = admin.get("/v1/access-keys", &[]).await.unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert!(keys[0].get("secret_access_key").is_none(), "{keys}");
    // The store holds the secret sealed under the master key, never in clear.
    let (stored,): (String,) = sqlx::query_as("SELECT secret FROM access_keys WHERE id = $1")
        .bind(&ak)
        .fetch_one(&ts.server.as_ref().unwrap().app.store.db.read)
        .await
        .unwrap();
    assert!(
        stored.starts_with("v1:") && !stored.contains(&sk),
        "{stored}"
    );
    // A wrong secret, a wrong region, a replay and a stale date are all refused.
    let wrong = Client::new(
        &ts.url,
        Auth::Key {
            access_key: ak.clone(),
            secret_key: "x".repeat(40),
            region: "gd-1".into(),
        },
    );
    assert_eq!(
        status(wrong.get::<Value>("/v1/auth/whoami", &[]).await),
        401
    );
    let region = Client::new(
        &ts.url,
        Auth::Key {
            access_key: ak.clone(),
            secret_key: sk.clone(),
            region: "other".into(),
        },
    );
    assert_eq!(
        status(region.get::<Value>("/v1/auth/whoami", &[]).await),
        401
    );
    let http = reqwest::Client::new();
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let host = ts.url.trim_start_matches("http://").to_string();
    let hash = stratus_api::sigv4::EMPTY_SHA256;
    let req = stratus_api::sigv4::Request {
        method: "GET",
        raw_path: "/v1/auth/whoami",
        raw_query: "",
        headers: vec![
            ("host".into(), host.clone()),
            ("x-amz-content-sha256".into(), hash.into()),
            ("x-amz-date".into(), date.clone()),
        ],
        payload_hash: hash,
    };
    let authz = stratus_api::sigv4::authorization_header(&ak, &sk, &date, "gd-1", "stratus", &req);
    let send = || {
        http.get(format!("{}/v1/auth/whoami", ts.url))
            .header("x-amz-date", &date)
            .header("x-amz-content-sha256", hash)
            .header("authorization", &authz)
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(send().await.unwrap().status(), 401, "replayed signature");
    let old = "20200101T000000Z";
    let req = stratus_api::sigv4::Request {
        method: "GET",
        raw_path: "/v1/auth/whoami",
        raw_query: "",
        headers: vec![
            ("host".into(), host),
            ("x-amz-content-sha256".into(), hash.into()),
            ("x-amz-date".into(), old.into()),
        ],
        payload_hash: hash,
    };
    let authz = stratus_api::sigv4::authorization_header(&ak, &sk, old, "gd-1", "stratus", &req);
    let r = http
        .get(format!("{}/v1/auth/whoami", ts.url))
        .header("x-amz-date", old)
        .header("x-amz-content-sha256", hash)
        .header("authorization", authz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("x-amz-date"));
    // A tampered body does not match its signed hash.
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let body = br#"{"name":"a"}"#;
    let claimed = stratus_api::sigv4::sha256_hex(body);
    let req = stratus_api::sigv4::Request {
        method: "POST",
        raw_path: "/v1/organizations",
        raw_query: "",
        headers: vec![
            ("host".into(), ts.url.trim_start_matches("http://").into()),
            ("x-amz-content-sha256".into(), claimed.clone()),
            ("x-amz-date".into(), date.clone()),
        ],
        payload_hash: &claimed,
    };
    let authz = stratus_api::sigv4::authorization_header(&ak, &sk, &date, "gd-1", "stratus", &req);
    let r = http
        .post(format!("{}/v1/organizations", ts.url))
        .header("content-type", "application/json")
        .header("x-amz-date", &date)
        .header("x-amz-content-sha256", &claimed)
        .header("authorization", authz)
        .body(r#"{"name":"b"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A disabled key stops working at once.
    let _: Value = admin
        .patch(&format!("/v1/access-keys/{ak}"), &json!({"enabled": false}))
        .await
        .unwrap();
    assert_eq!(
        status(signed.get::<Value>("/v1/auth/whoami", &[]).await),
        401
    );
    // Other users do not see the key.
    let sec = ts.secadmin().await;
    let t = tree(&admin, "org2").await;
    let (_, u) = user_with_role(
        &ts,
        &sec,
        "keyless",
        Some(&t.child),
        Some(("viewer", "vdc", &t.child)),
    )
    .await;
    assert_eq!(
        status(u.delete(&format!("/v1/access-keys/{ak}")).await),
        404
    );
    ts.stop().await;
}
