-- name: Google Cloud Storage buckets
-- provider: google
-- schedule: 0 */6 * * *
-- target_table: google_storage_buckets
-- demo_env is set on the buckets the demo stack created (label stackql-inventory-demo).
SELECT name, location, storageClass, timeCreated,
       JSON_EXTRACT(labels, '$.stackql-inventory-demo') AS demo_env,
       JSON_EXTRACT(iamConfiguration, '$.publicAccessPrevention') AS public_access_prevention
FROM google.storage.buckets
WHERE project = 'my-project';
