//! A news service: a broadcaster that listeners join and leave while it runs.
//!
//! `news` broadcasts the headlines it is told to publish, and **waits for consumers**
//! (`without_consumers = wait`): it starts with nobody listening, keeps what is published while
//! nobody listens, and stays up when its last listener leaves. Listeners are added to the running
//! pipeline and subscribed through its handle; one subscribes with a selector and hears only the
//! headlines about Rust. A graceful shutdown ends the service, and the report accounts for every
//! headline: heard, or lost with the broadcaster's buffer when nobody was there to hear it.
//!
//! ```text
//! cargo run --example pubsub
//! ```

use genstage::prelude::*;
use tokio::sync::mpsc;

/// Publishes a headline: answered once it is dispatched (to the listeners, or to the buffer).
struct Publish(&'static str);

/// Broadcasts what it is told to publish; emits nothing on its own.
struct News;

#[stage(producer, dispatcher = broadcast, without_consumers = wait)]
impl News {
    fn handle_demand(&mut self, _demand: usize) -> Vec<String> {
        Vec::new()
    }

    fn handle_call(&mut self, Publish(headline): Publish, reply: ReplyTo<()>) -> Vec<String> {
        reply.reply(());
        vec![headline.to_owned()]
    }
}

/// Tells `main` what it hears, under its name.
struct Listener {
    name: &'static str,
    heard: mpsc::UnboundedSender<(&'static str, String)>,
}

#[stage(consumer)]
impl Listener {
    fn handle_events(&mut self, headlines: Vec<String>) {
        for headline in headlines {
            let _ = self.heard.send((self.name, headline));
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pipeline = Pipeline::new();
    let news = pipeline.add_producer_named("news", News);
    let running = pipeline.start();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let listener = |name| Listener {
        name,
        heard: heard_tx.clone(),
    };
    // Prints the next `count` headlines heard.
    let mut hear = async |count: usize| {
        for _ in 0..count {
            let (name, headline) = heard.recv().await.ok_or("a listener is gone")?;
            println!("  {name} hears: {headline}");
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };

    println!("nobody listens yet");
    news.call(Publish("Service opens")).await?;
    news.call(Publish("Rust 2.0 announced")).await?;
    println!("  news keeps {}", news.estimate_buffered_count().await?);

    println!("alice joins");
    let alice = running
        .add_consumer_named("alice", listener("alice"))
        .await?;
    let alice_tag = running.subscribe(&news, &alice).await?;
    hear(2).await?;

    println!("bob joins, for Rust news only");
    let bob = running.add_consumer_named("bob", listener("bob")).await?;
    let about_rust = |headline: &String| headline.contains("Rust");
    let bob_tag = running
        .subscribe_selected(&news, &bob, SubscribeOptions::new(), about_rust)
        .await?;
    news.call(Publish("Rust crate tops downloads")).await?;
    news.call(Publish("Rain expected")).await?;
    hear(3).await?;

    println!("alice and bob leave");
    running.cancel(alice_tag).await?;
    running.cancel(bob_tag).await?;
    news.call(Publish("Late edition")).await?;
    println!("  news keeps {}", news.estimate_buffered_count().await?);

    println!("carol joins");
    let carol = running
        .add_consumer_named("carol", listener("carol"))
        .await?;
    let carol_tag = running.subscribe(&news, &carol).await?;
    hear(1).await?;

    println!("carol leaves: nobody hears the last one");
    running.cancel(carol_tag).await?;
    news.call(Publish("Closing time")).await?;

    let report = running.shutdown().await?;
    println!();
    println!("{report}");
    assert!(report.balanced());
    Ok(())
}
