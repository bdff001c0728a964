-- Sample rows of a barbeque database for `barbeque import` (tests/integration/test_import.py).
-- @SUFFIX@, @DEFAULT_QUEUE_URL@ and @MAIL_QUEUE_URL@ are filled in by the test: names
-- unique to the run, and SQS queues of the test's moto server.
INSERT INTO barbeque_apps (id, name, docker_image, description, created_at, updated_at) VALUES
  (1, 'blog-@SUFFIX@', 'busybox:1.36', 'The blog', NOW(), NOW()),
  (2, 'My_Shop_@SUFFIX@', 'registry.example:5000/shop:latest', NULL, NOW(), NOW());

-- `command` is what Rails' `serialize :command, Array` writes: a YAML array.
INSERT INTO barbeque_job_definitions (id, job, app_id, command, description, created_at, updated_at) VALUES
  (1, 'NotifyAuthor', 1, '---\n- echo\n- notify\n', 'Tell the author about a comment', NOW(), NOW()),
  (2, 'index-post', 1, '---\n- sh\n- "-c"\n- echo indexing $BARBEQUE_MESSAGE\n', NULL, NOW(), NOW()),
  (3, 'Checkout', 2, '--- []\n', 'Charge the card', NOW(), NOW());

INSERT INTO barbeque_retry_configs (id, job_definition_id, retry_limit, base_delay, max_delay, jitter, created_at, updated_at) VALUES
  (1, 1, 5, 2.5, 60, 0, NOW(), NOW());

INSERT INTO barbeque_slack_notifications (id, job_definition_id, channel, notify_success, failure_notification_text, created_at, updated_at, notify_failure_only_if_retry_limit_reached) VALUES
  (1, 1, '#blog', 1, '@author', NOW(), NOW(), 1);

INSERT INTO barbeque_job_queues (id, name, description, queue_url, created_at, updated_at) VALUES
  (1, 'default-@SUFFIX@', 'Everything else', '@DEFAULT_QUEUE_URL@', NOW(), NOW()),
  (2, 'Mail_@SUFFIX@', NULL, '@MAIL_QUEUE_URL@', NOW(), NOW());

INSERT INTO barbeque_sns_subscriptions (id, topic_arn, job_queue_id, job_definition_id, created_at, updated_at) VALUES
  (1, 'arn:aws:sns:us-east-1:123456789012:blog-comments-@SUFFIX@', 2, 2, NOW(), NOW());
