-- name: Google Cloud VPC networks
-- provider: google
-- schedule: 0 2 * * *
-- target_table: google_compute_networks
SELECT id, name, autoCreateSubnetworks, JSON_EXTRACT(routingConfig, '$.routingMode') AS routing_mode,
       creationTimestamp
FROM google.compute.networks
WHERE project = 'my-project';
