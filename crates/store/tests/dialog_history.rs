//! A user's earlier dialogs: the list (`dialog_summaries`) and reopening one
//! (`reopen_dialog`), against real PostgreSQL, each test in a schema of its own.

use genq_store::{Role, Store, StoreError};

mod common;
use common::{another, open};

async fn user(store: &Store, telegram_id: i64) -> i64 {
    store
        .welcome_user(telegram_id, "en", 0)
        .await
        .expect("welcome user")
        .0
        .id
}

async fn persona(store: &Store, name: &str) -> i64 {
    store
        .upsert_persona(name, "You are kind.", "Hi!", "red scarf")
        .await
        .expect("persona")
        .id
}

async fn active(store: &Store, user_id: i64) -> Option<i64> {
    store
        .active_dialog(user_id)
        .await
        .expect("active dialog")
        .map(|d| d.id)
}

async fn active_count(store: &Store, user_id: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dialogs WHERE user_id = $1 AND is_active")
        .bind(user_id)
        .fetch_one(store.pool())
        .await
        .expect("count active dialogs")
}

#[tokio::test]
async fn summaries_list_a_users_dialogs_newest_first_with_their_first_user_message() {
    let (store, schema) = open("dialog_summaries").await;
    let alice = user(&store, 5001).await;
    let bob = user(&store, 5002).await;
    let anna = persona(&store, "Anna").await;
    let max = persona(&store, "Max").await;

    let first = store.new_dialog(alice, anna).await.unwrap();
    // the assistant may speak first: the title is still the user's first message
    store
        .append_message(first.id, Role::Assistant, "Hello, I am Anna")
        .await
        .unwrap();
    store
        .append_exchange(first.id, "Tell me about lighthouses", "They shine.")
        .await
        .unwrap();
    store
        .append_exchange(first.id, "And about ships?", "They sail.")
        .await
        .unwrap();
    let second = store.new_dialog(alice, max).await.unwrap();
    let long = "x".repeat(500);
    store
        .append_exchange(second.id, &long, "That is long.")
        .await
        .unwrap();
    let third = store.new_dialog(alice, anna).await.unwrap(); // empty, active
    store.new_dialog(bob, max).await.unwrap(); // someone else's

    let list = store.dialog_summaries(alice, 10).await.unwrap();
    let ids: Vec<i64> = list.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        vec![third.id, second.id, first.id],
        "newest first, own only"
    );
    assert!(list[0].is_active && !list[1].is_active && !list[2].is_active);
    assert_eq!(
        list[0].first_user_message, None,
        "an empty dialog has no title"
    );
    assert_eq!(list[0].messages, 0);
    assert_eq!(list[0].persona_name, "Anna");
    assert_eq!(list[1].persona_name, "Max");
    assert_eq!(
        list[1]
            .first_user_message
            .as_deref()
            .map(|m| m.chars().count()),
        Some(genq_store::SUMMARY_FIRST_MESSAGE_CHARS as usize),
        "a long first message is cut"
    );
    assert_eq!(
        list[2].first_user_message.as_deref(),
        Some("Tell me about lighthouses")
    );
    assert_eq!(list[2].messages, 5);
    assert_eq!(list[2].created_at, first.created_at);

    let two = store.dialog_summaries(alice, 2).await.unwrap();
    assert_eq!(
        two.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![third.id, second.id],
        "the limit keeps the newest"
    );
    assert!(store.dialog_summaries(alice, 0).await.unwrap().is_empty());
    let one = store.dialog_summary(alice, first.id).await.unwrap();
    assert_eq!(one.as_ref(), list.get(2), "one dialog reads as in the list");
    let bobs = store.dialog_summaries(bob, 10).await.unwrap();
    assert_eq!(
        store.dialog_summary(alice, bobs[0].id).await.unwrap(),
        None,
        "not someone else's"
    );
    assert!(store.dialog_summaries(-1, 10).await.unwrap().is_empty());
    schema.drop().await;
}

#[tokio::test]
async fn reopening_makes_an_earlier_dialog_the_active_one_and_refuses_a_foreign_one() {
    let (store, schema) = open("dialog_reopen").await;
    let alice = user(&store, 5101).await;
    let bob = user(&store, 5102).await;
    let anna = persona(&store, "Anna").await;
    let first = store.new_dialog(alice, anna).await.unwrap();
    store
        .append_exchange(first.id, "Remember the red boat", "I will.")
        .await
        .unwrap();
    let second = store.new_dialog(alice, anna).await.unwrap();
    let bobs = store.new_dialog(bob, anna).await.unwrap();
    assert_eq!(active(&store, alice).await, Some(second.id));

    let reopened = store.reopen_dialog(alice, first.id).await.unwrap();
    assert_eq!(reopened.id, first.id);
    assert!(reopened.is_active);
    assert_eq!(active(&store, alice).await, Some(first.id));
    assert_eq!(active_count(&store, alice).await, 1);
    // its history is still there for the next reply
    let history = store.last_messages(first.id, 20).await.unwrap();
    assert_eq!(history[0].content, "Remember the red boat");

    // again: harmless
    store.reopen_dialog(alice, first.id).await.unwrap();
    assert_eq!(active(&store, alice).await, Some(first.id));
    assert_eq!(active_count(&store, alice).await, 1);

    // another user's dialog, or none at all: refused, nothing changes
    match store.reopen_dialog(alice, bobs.id).await {
        Err(StoreError::UnknownDialog(id)) => assert_eq!(id, bobs.id),
        other => panic!("a foreign dialog must be refused, got {other:?}"),
    }
    assert!(matches!(
        store.reopen_dialog(alice, bobs.id + 1000).await,
        Err(StoreError::UnknownDialog(_))
    ));
    assert!(matches!(
        store.reopen_dialog(999_999, first.id).await,
        Err(StoreError::UnknownUser(999_999))
    ));
    assert_eq!(active(&store, alice).await, Some(first.id));
    assert_eq!(active(&store, bob).await, Some(bobs.id), "bob's stays his");

    // a new dialog after a reopen is the active one again
    let third = store.new_dialog(alice, anna).await.unwrap();
    assert_eq!(active(&store, alice).await, Some(third.id));
    assert_eq!(active_count(&store, alice).await, 1);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reopens_and_new_dialogs_leave_exactly_one_active_dialog() {
    let (store, schema) = open("dialog_reopen_race").await;
    let other = another(&schema).await;
    let alice = user(&store, 5201).await;
    let anna = persona(&store, "Anna").await;
    let mut dialogs = Vec::new();
    for _ in 0..4 {
        dialogs.push(store.new_dialog(alice, anna).await.unwrap().id);
    }
    for round in 0..10 {
        let mut tasks = Vec::new();
        for (i, &d) in dialogs.iter().enumerate() {
            let s = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tasks.push(tokio::spawn(async move {
                s.reopen_dialog(alice, d).await.map(|_| ())
            }));
        }
        let s = other.clone();
        tasks.push(tokio::spawn(async move {
            s.new_dialog(alice, anna).await.map(|_| ())
        }));
        for t in tasks {
            t.await
                .expect("task")
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert_eq!(active_count(&store, alice).await, 1, "round {round}");
    }
    schema.drop().await;
}
