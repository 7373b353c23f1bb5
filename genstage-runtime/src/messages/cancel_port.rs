//! [`CancelPort`]: how a stage cancels its own subscriptions, and tells of those its dispatcher
//! refused.

use tokio::sync::mpsc;

use crate::subscription::{CancelAtProducer, SubscriptionTag};

/// How a stage cancels one of its own subscriptions to a producer
/// ([`Context::cancel`](crate::Context::cancel), [`Asker::cancel`](crate::Asker::cancel)): it tells
/// its pipeline's supervisor, which counts the subscription cancelled as
/// [`PipelineHandle::cancel`](crate::PipelineHandle::cancel) would (so that a partition it held is
/// free for another consumer, and the cycle check no longer follows it), then the producer, at
/// once, as GenStage's consumer does.
#[derive(Clone)]
pub(crate) struct CancelPort(mpsc::UnboundedSender<SubscriptionTag>);

impl CancelPort {
    /// A port, and the supervisor's end of it.
    pub(crate) fn channel() -> (CancelPort, mpsc::UnboundedReceiver<SubscriptionTag>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (CancelPort(sender), receiver)
    }

    /// Cancels `subscription`, of `producer`; false when the pipeline has ended.
    pub(crate) fn cancel(
        &self,
        subscription: SubscriptionTag,
        producer: &dyn CancelAtProducer,
    ) -> bool {
        // The supervisor first: whoever learns of the cancel from the producer (the consumer's
        // `handle_cancel`, then a handle's request) finds the supervisor told before it.
        let running = self.0.send(subscription).is_ok();
        if running {
            producer.cancel(subscription.0);
        }
        running
    }

    /// Tells the supervisor that a producer's dispatcher refused `subscription` as it took it in
    /// ([`Dispatcher::subscribe`](crate::dispatcher::Dispatcher::subscribe) returned an error): it
    /// never ran, and is counted cancelled, so that it holds no partition nor broadcast
    /// subscription, and is not listed, for the requests made once its consumer is told.
    pub(crate) fn refused(&self, subscription: SubscriptionTag) {
        // Once the pipeline has ended, no one asks.
        let _ = self.0.send(subscription);
    }
}
