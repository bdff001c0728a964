-- cookpad/barbeque's db/schema.rb (spec/dummy/db/schema.rb, version 2024_04_15_080757) as
-- MySQL DDL, the way Rails' schema:load creates it: `t.string` is varchar(255), booleans
-- are tinyint(1), `id: :integer` is an int primary key (retry_configs' is a bigint).
CREATE TABLE barbeque_apps (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name varchar(255) NOT NULL,
  docker_image varchar(255) NOT NULL,
  description text,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  UNIQUE KEY index_barbeque_apps_on_name (name)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_docker_containers (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  message_id varchar(255) NOT NULL,
  container_id varchar(255) NOT NULL,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  UNIQUE KEY index_barbeque_docker_containers_on_message_id (message_id)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_ecs_hako_tasks (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  message_id varchar(255) NOT NULL,
  cluster varchar(255) NOT NULL,
  task_arn varchar(255) NOT NULL,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  UNIQUE KEY index_barbeque_ecs_hako_tasks_on_message_id (message_id)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_job_definitions (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  job varchar(255) COLLATE utf8mb4_bin NOT NULL,
  app_id int NOT NULL,
  command varchar(255) NOT NULL,
  description text,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  UNIQUE KEY index_barbeque_job_definitions_on_job_and_app_id (job, app_id)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_job_executions (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  message_id varchar(255) NOT NULL,
  status int NOT NULL DEFAULT 0,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  job_definition_id int,
  finished_at datetime,
  job_queue_id int,
  KEY index_barbeque_job_executions_on_created_at (created_at),
  KEY index_barbeque_job_executions_on_job_definition_id (job_definition_id),
  UNIQUE KEY index_barbeque_job_executions_on_message_id (message_id),
  KEY index_barbeque_job_executions_on_status (status)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_job_queues (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name varchar(255) NOT NULL,
  description text,
  queue_url varchar(255) NOT NULL,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  UNIQUE KEY index_barbeque_job_queues_on_name (name)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_job_retries (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  message_id varchar(255) NOT NULL,
  job_execution_id int NOT NULL,
  status int NOT NULL DEFAULT 0,
  finished_at datetime,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  UNIQUE KEY index_barbeque_job_retries_on_message_id (message_id),
  KEY index_barbeque_job_retries_on_status (status)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_retry_configs (
  id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  job_definition_id int NOT NULL,
  retry_limit int NOT NULL DEFAULT 3,
  base_delay float NOT NULL DEFAULT 15.0,
  max_delay int,
  jitter tinyint(1) NOT NULL DEFAULT 1,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  UNIQUE KEY index_barbeque_retry_configs_on_job_definition_id (job_definition_id)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_slack_notifications (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  job_definition_id int,
  channel varchar(255) NOT NULL,
  notify_success tinyint(1) NOT NULL DEFAULT 0,
  failure_notification_text varchar(255),
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL,
  notify_failure_only_if_retry_limit_reached tinyint(1) NOT NULL DEFAULT 0
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE barbeque_sns_subscriptions (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  topic_arn varchar(255) NOT NULL,
  job_queue_id int NOT NULL,
  job_definition_id int NOT NULL,
  created_at datetime NOT NULL,
  updated_at datetime NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
