# Stages jobs as sidekiq-reliable_job's middleware does (the gem itself needs Ruby 3.3 and
# Sidekiq 7, which Debian 12 does not have): the client middleware turns every push, including
# the one Sidekiq's scheduler makes when a scheduled job is due, into a pending row of the outbox
# table and pushes nothing; the server middleware deletes a job's row when it completes. With the
# gem's unique index on jid, staging a job a second time raises, as with the gem.
# harness.rb loads this when RELIABLE_JOB_TABLE names the table (DATABASE_URL the database).
require "json"
require "pg"
require "securerandom"

module ReliableJobStage
  def self.table
    ENV.fetch("RELIABLE_JOB_TABLE")
  end

  def self.connection
    Thread.current[:reliable_job_stage_pg] ||= PG.connect(ENV.fetch("DATABASE_URL"))
  end

  class ClientMiddleware
    def call(_job_class, job, _queue, _redis_pool)
      job["reliable_job"] = true
      job["jid"] ||= SecureRandom.hex(12)
      ReliableJobStage.connection.exec_params(
        "INSERT INTO #{ReliableJobStage.table} (jid, job_class, payload, status, created_at, updated_at) " \
        "VALUES ($1, $2, $3, 'pending', now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')",
        [job["jid"], job["class"].to_s, JSON.generate(job)]
      )
      nil
    end
  end

  class ServerMiddleware
    def call(_worker, job, _queue)
      yield
      ReliableJobStage.connection.exec_params("DELETE FROM #{ReliableJobStage.table} WHERE jid = $1", [job["jid"]]) if job["reliable_job"]
    end
  end
end

Sidekiq.configure_client do |config|
  config.client_middleware { |chain| chain.add ReliableJobStage::ClientMiddleware }
end
Sidekiq.configure_server do |config|
  config.client_middleware { |chain| chain.add ReliableJobStage::ClientMiddleware }
  config.server_middleware { |chain| chain.add ReliableJobStage::ServerMiddleware }
end
