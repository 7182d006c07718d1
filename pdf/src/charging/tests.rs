//! The engine's decisions, request by request, with the books checked after each.

use protocol::dictionary::{CcRequestType, SubscriptionIdType};
use protocol::messages::{Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId};
use protocol::result_code::ResultCode;
use smallvec::smallvec;

use super::*;
use crate::population::{BalanceDistribution, PopulationSpec};

/// Voice at 2 per second, 60 s grants; 4 subscribers: 0 and 1 share account 0.
fn engine(balance: i64) -> Engine {
    let spec = PopulationSpec {
        subscribers: 4,
        shared_share: 0.5,
        family_size: 2,
        balance: BalanceDistribution::Constant { value: balance },
        ..Default::default()
    };
    Engine::new(
        Population::Generated(spec),
        Tariff::default(),
        EngineConfig::default(),
    )
}

/// A voice CCR for `msisdn` (Rating-Group 1), `used_seconds` reported; also the snapshot
/// tests' way to drive an engine.
pub(crate) fn ccr<'a>(
    session: &'a str,
    msisdn: &'a str,
    kind: CcRequestType,
    number: u32,
    used_seconds: Option<u32>,
) -> Ccr<'a> {
    Ccr {
        session_id: session,
        origin_host: "gw.example.net",
        origin_realm: "example.net",
        destination_realm: "example.net",
        auth_application_id: 4,
        service_context_id: "32260@3gpp.org",
        cc_request_type: kind,
        cc_request_number: number,
        subscription_ids: smallvec![SubscriptionId {
            subscription_id_type: SubscriptionIdType::END_USER_E164,
            subscription_id_data: msisdn,
        }],
        multiple_services_credit_control: smallvec![MultipleServicesCreditControl {
            used_service_units: used_seconds
                .map(|s| smallvec![ServiceUnit {
                    cc_time: Some(s),
                    ..Default::default()
                }])
                .unwrap_or_default(),
            rating_group: Some(1),
            ..Default::default()
        }],
        ..Default::default()
    }
}

const ALICE: &str = "491700000000";
const BOB: &str = "491700000001";
const CAROL: &str = "491700000002";

fn books(engine: &Engine) {
    let problems = engine.check_books();
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn initial_update_termination_charges_exactly_the_usage() {
    let mut e = engine(1000);
    let s = "gw.example.net;1;1";
    let d = e.credit_control(0, &ccr(s, CAROL, CcRequestType::INITIAL_REQUEST, 0, None));
    assert_eq!(
        (d.result, d.granted, d.final_units),
        (ResultCode::SUCCESS, Some(60), false)
    );
    assert_eq!(
        e.ledger.get(1).map(|a| (a.balance, a.reserved)),
        Some((880, 120))
    );
    books(&e);
    let d = e.credit_control(
        1,
        &ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 1, Some(45)),
    );
    assert_eq!(
        (d.result, d.granted, d.debit),
        (ResultCode::SUCCESS, Some(60), Some((1, 90)))
    );
    books(&e);
    let d = e.credit_control(
        2,
        &ccr(s, CAROL, CcRequestType::TERMINATION_REQUEST, 2, Some(10)),
    );
    assert_eq!((d.result, d.debit), (ResultCode::SUCCESS, Some((1, 20))));
    let a = e.ledger.get(1).expect("account");
    assert_eq!(
        (a.balance, a.reserved, a.debited, a.sessions),
        (890, 0, 110, 0)
    );
    assert!(e.sessions.is_empty());
    books(&e);
}

#[test]
fn final_units_then_4012() {
    let mut e = engine(150); // 75 s of voice
    let s = "gw.example.net;1;2";
    let d = e.credit_control(0, &ccr(s, CAROL, CcRequestType::INITIAL_REQUEST, 0, None));
    assert_eq!((d.granted, d.final_units), (Some(60), false));
    let d = e.credit_control(
        1,
        &ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 1, Some(60)),
    );
    assert_eq!(
        (d.result, d.granted, d.final_units),
        (ResultCode::SUCCESS, Some(15), true)
    );
    let d = e.credit_control(
        2,
        &ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 2, Some(15)),
    );
    assert_eq!(
        (d.result, d.debit),
        (ResultCode::CREDIT_LIMIT_REACHED, Some((1, 30)))
    );
    assert!(e.sessions.is_empty(), "4012 ends the session");
    assert_eq!(
        e.ledger.get(1).map(|a| (a.balance, a.debited)),
        Some((0, 150))
    );
    let d = e.credit_control(
        3,
        &ccr(
            "gw.example.net;1;3",
            CAROL,
            CcRequestType::INITIAL_REQUEST,
            0,
            None,
        ),
    );
    assert_eq!(d.result, ResultCode::CREDIT_LIMIT_REACHED);
    books(&e);
}

#[test]
fn a_shared_account_running_dry_aborts_the_other_sessions() {
    let mut e = engine(240);
    let (a, b) = ("gw.example.net;2;1", "gw.example.net;2;2");
    e.credit_control(0, &ccr(a, ALICE, CcRequestType::INITIAL_REQUEST, 0, None));
    e.credit_control(0, &ccr(b, BOB, CcRequestType::INITIAL_REQUEST, 0, None));
    assert_eq!(
        e.ledger.get(0).map(|x| (x.balance, x.sessions)),
        Some((0, 2))
    );
    // Alice uses more than her grant: the account is empty, Bob's session is aborted.
    let d = e.credit_control(
        1,
        &ccr(a, ALICE, CcRequestType::UPDATE_REQUEST, 1, Some(60)),
    );
    assert_eq!(d.aborts, vec![b.to_owned()]);
    // Only once.
    let d = e.credit_control(2, &ccr(a, ALICE, CcRequestType::UPDATE_REQUEST, 2, Some(0)));
    assert!(d.aborts.is_empty());
    // Bob terminates after the ASR, and is charged for what he used.
    let d = e.credit_control(
        3,
        &ccr(b, BOB, CcRequestType::TERMINATION_REQUEST, 1, Some(30)),
    );
    assert_eq!((d.result, d.debit), (ResultCode::SUCCESS, Some((0, 60))));
    books(&e);
}

#[test]
fn unknown_subscriber_and_unknown_session() {
    let mut e = engine(100);
    let d = e.credit_control(
        0,
        &ccr(
            "s;1;1",
            "491799999999",
            CcRequestType::INITIAL_REQUEST,
            0,
            None,
        ),
    );
    assert_eq!(d.result, ResultCode::USER_UNKNOWN);
    let d = e.credit_control(
        0,
        &ccr("s;1;2", CAROL, CcRequestType::UPDATE_REQUEST, 1, Some(1)),
    );
    assert_eq!(d.result, ResultCode::UNKNOWN_SESSION_ID);
    let d = e.credit_control(
        0,
        &ccr(
            "s;1;2",
            CAROL,
            CcRequestType::TERMINATION_REQUEST,
            1,
            Some(1),
        ),
    );
    assert_eq!(d.result, ResultCode::UNKNOWN_SESSION_ID);
    books(&e);
}

#[test]
fn retransmissions_are_charged_once_and_gaps_are_refused() {
    let mut e = engine(1000);
    let s = "gw.example.net;3;1";
    e.credit_control(0, &ccr(s, CAROL, CcRequestType::INITIAL_REQUEST, 0, None));
    let first = e.credit_control(
        1,
        &ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 1, Some(30)),
    );
    let again = e.credit_control(
        1,
        &ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 1, Some(30)),
    );
    assert!(again.retransmission);
    assert_eq!(
        (again.result, again.granted, again.debit),
        (first.result, first.granted, None)
    );
    let gap = e.credit_control(
        2,
        &ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 5, Some(30)),
    );
    assert_eq!(
        (gap.result, gap.debit),
        (ResultCode::INVALID_AVP_VALUE, None)
    );
    assert!(gap
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("expected 2")));
    let end = e.credit_control(
        3,
        &ccr(s, CAROL, CcRequestType::TERMINATION_REQUEST, 2, Some(0)),
    );
    let end_again = e.credit_control(
        4,
        &ccr(s, CAROL, CcRequestType::TERMINATION_REQUEST, 2, Some(0)),
    );
    assert_eq!(
        (end_again.result, end_again.retransmission),
        (end.result, true)
    );
    assert_eq!(e.ledger.get(1).map(|a| a.debited), Some(60));
    books(&e);
}

#[test]
fn events_and_expiry() {
    let mut e = engine(1000);
    let mut sms = ccr(
        "gw.example.net;4;1",
        CAROL,
        CcRequestType::EVENT_REQUEST,
        0,
        None,
    );
    sms.multiple_services_credit_control[0].rating_group = Some(20);
    let d = e.credit_control(0, &sms);
    assert_eq!((d.result, d.debit), (ResultCode::SUCCESS, Some((1, 10))));
    assert!(e.credit_control(0, &sms).retransmission);
    e.credit_control(
        0,
        &ccr(
            "gw.example.net;4;2",
            CAROL,
            CcRequestType::INITIAL_REQUEST,
            0,
            None,
        ),
    );
    assert_eq!(e.expire(1199), 0);
    // In parts: slots before the session's expire nothing, the part holding it does.
    let slot = e.sessions.slot_count() - 1;
    assert_eq!(e.expire_slots(1200, 0, slot), (0, Some(slot)));
    assert_eq!(e.expire_slots(1200, slot + 1, 10), (0, None));
    assert_eq!(e.expire(1200), 1, "silent for twice the validity time");
    assert_eq!(e.expire_slots(1200, 0, u32::MAX), (0, None));
    assert_eq!(
        e.ledger.get(1).map(|a| (a.balance, a.reserved)),
        Some((990, 0))
    );
    books(&e);
}

#[test]
fn migrate_moves_accounts_and_sessions_once_and_redirects_what_moved() {
    let mut old = engine(1000);
    let mut new = engine(1000);
    new.own_none();
    books(&new);
    assert_eq!(new.ledger.totals(), (0, 0, 0), "owns nothing: no money");
    let s = "gw.example.net;1;7";
    let d = new.credit_control(0, &ccr(s, CAROL, CcRequestType::INITIAL_REQUEST, 0, None));
    assert_eq!(d.result, ResultCode::TOO_BUSY, "not owned, owner unknown");
    assert!(new.sessions.is_empty());

    let d = old.credit_control(0, &ccr(s, CAROL, CcRequestType::INITIAL_REQUEST, 0, None));
    assert_eq!(d.result, ResultCode::SUCCESS);
    let u1 = ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 1, Some(45));
    assert_eq!(old.credit_control(1, &u1).debit, Some((1, 90)));

    let mut cursor = 0;
    let batch = old
        .freeze_batch(1, 10, "aaa://old:3868", 1, &mut cursor)
        .expect("a batch");
    assert_eq!((batch.accounts.len(), batch.sessions.len()), (3, 1));
    assert!(old
        .freeze_batch(1, 10, "aaa://old:3868", 2, &mut cursor)
        .is_none());
    let u2 = ccr(s, CAROL, CcRequestType::UPDATE_REQUEST, 2, Some(30));
    assert!(old.credit_control(2, &u2).hold, "frozen: wait");

    new.check_import(&batch).expect("importable");
    assert!(new.is_new_import(&batch));
    let done = new.apply_import(2, &batch, true);
    assert_eq!((done.accounts, done.sessions, done.duplicates), (3, 1, 0));
    old.finish_export(&batch, "aaa://new:3868");
    books(&old);
    books(&new);
    assert_eq!(old.ownership.owned(), 0);
    assert_eq!(
        old.ledger
            .get(1)
            .map(|a| (a.balance, a.reserved, a.debited)),
        Some((0, 0, 90))
    );

    // The session's next request on the old node: 3006 to the new one; then it goes on there.
    let d = old.credit_control(2, &u2);
    assert_eq!(d.result, ResultCode::REDIRECT_INDICATION);
    assert_eq!(
        d.redirect.as_deref().map(String::as_str),
        Some("aaa://new:3868")
    );
    assert_eq!(old.ownership.numbers().sessions_waiting_redirect, 0);
    assert_eq!(
        old.credit_control(
            2,
            &ccr("gw;9;9", BOB, CcRequestType::INITIAL_REQUEST, 0, None)
        )
        .result,
        ResultCode::REDIRECT_INDICATION,
        "a new session of a moved account"
    );
    // The new node knows the session's last answer: a retransmission is replayed, uncharged.
    let again = new.credit_control(2, &u1);
    assert!(again.retransmission && again.debit.is_none(), "{again:?}");
    assert_eq!(new.credit_control(2, &u2).debit, Some((1, 60)));
    // The same batch again (the acknowledgement was lost): nothing moves twice.
    new.check_import(&batch).expect("a copy is fine");
    assert!(!new.is_new_import(&batch));
    let copy = new.apply_import(3, &batch, true);
    assert_eq!((copy.accounts, copy.duplicates), (0, 3));
    let t = ccr(s, CAROL, CcRequestType::TERMINATION_REQUEST, 3, Some(10));
    assert_eq!(new.credit_control(3, &t).debit, Some((1, 20)));
    books(&new);
    // Summed over nodes, or on the owner with what it carried: 45 + 30 + 10 s at 2.
    let on_new = new.ledger.get(1).expect("account").debited;
    assert_eq!(on_new + old.ledger.get(1).expect("account").debited, 170);
    assert_eq!(on_new + new.ownership.debited_before(1), 170);
    assert_eq!(new.ledger.get(1).map(|a| a.initial), Some(1000 - 90));
    // A stale copy to the old node (it moved them away at that epoch) is refused.
    assert!(old.check_import(&batch).is_err());
}
