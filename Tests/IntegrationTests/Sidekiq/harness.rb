# A real Sidekiq for the integration tests. Loaded by `sidekiq -r harness.rb` it defines job
# classes that record each run in Redis; run as `ruby harness.rb inspect` it prints what Sidekiq's
# own API sees, as JSON. Connection: REDIS_URL, and SIDEKIQ_NAMESPACE for redis-namespace.
require "json"
require "sidekiq"
require "sidekiq/api"

redis = { url: ENV.fetch("REDIS_URL") }
redis[:namespace] = ENV["SIDEKIQ_NAMESPACE"] if ENV["SIDEKIQ_NAMESPACE"]
Sidekiq.configure_server do |config|
  config.redis = redis
  # Poll the schedule every second, without the usual start-up delay.
  config.options[:poll_interval_average] = 1
end
Sidekiq.configure_client { |config| config.redis = redis }

# Records every run: jid, queue, class, args and the time it ran, in the list "test:runs".
class RecordJob
  include Sidekiq::Worker

  def perform(*args)
    Sidekiq.redis do |conn|
      conn.rpush("test:runs", JSON.generate(
        "jid" => jid, "class" => self.class.name, "queue" => Thread.current[:test_queue],
        "args" => args, "ran_at" => Time.now.to_f
      ))
    end
  end
end

# The job class of the README's "Writing jobs from your app" snippets.
class OrderMailer < RecordJob; end

# Sidekiq's server middleware that tags each run with the queue it came from. It keeps its own
# thread variable: Sidekiq's job logger writes to :sidekiq_context after the job, and a job whose
# context was cleared would fail there (after running) and go to the retry set.
class QueueTag
  def call(_worker, job, queue)
    Thread.current[:test_queue] = queue
    yield
  ensure
    Thread.current[:test_queue] = nil
  end
end
Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add QueueTag }
end

require_relative "reliable_job_stage" if ENV["RELIABLE_JOB_TABLE"]

if $PROGRAM_NAME == __FILE__ && ARGV.first == "inspect"
  queues = Sidekiq::Queue.all.map { |q| [q.name, { "size" => q.size, "latency" => q.latency }] }.to_h
  puts JSON.generate(
    "queues" => queues,
    "scheduled" => Sidekiq::ScheduledSet.new.map { |job| { "jid" => job.jid, "at" => job.at.to_f } },
    "retries" => Sidekiq::RetrySet.new.size,
    "dead" => Sidekiq::DeadSet.new.size,
    "enqueued_at" => Sidekiq::Queue.all.flat_map { |q| q.map { |job| job.enqueued_at.to_f } }
  )
end
