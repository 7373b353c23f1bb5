//! [`CancelPort`]: where a stage sends the cancels of its own subscriptions.

use tokio::sync::mpsc;

use crate::subscription::SubscriptionTag;

/// Where a stage sends the cancel of one of its own subscriptions to a producer
/// ([`Context::cancel`](crate::Context::cancel), [`Asker::cancel`](crate::Asker::cancel)): its
/// pipeline's supervisor, which cancels it as [`PipelineHandle::cancel`](crate::PipelineHandle::cancel)
/// does, so that what the supervisor knows of the wiring (the partitions taken, the paths its
/// cycle check follows) stays true.
#[derive(Clone)]
pub(crate) struct CancelPort(mpsc::UnboundedSender<SubscriptionTag>);

impl CancelPort {
    /// A port, and the supervisor's end of it.
    pub(crate) fn channel() -> (CancelPort, mpsc::UnboundedReceiver<SubscriptionTag>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (CancelPort(sender), receiver)
    }

    /// Sends the cancel of `subscription`; false when the pipeline has ended.
    pub(crate) fn cancel(&self, subscription: SubscriptionTag) -> bool {
        self.0.send(subscription).is_ok()
    }
}
