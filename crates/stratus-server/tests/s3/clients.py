"""Real S3 clients against the Stratus S3 endpoint: boto3 for a full session, the aws CLI
for the everyday commands. Run by tests/s3.rs with the endpoint and keys in the environment:
STRATUS_S3 (URL), AK_A/SK_A (project A's key), AK_B/SK_B (project B's key), WORK (scratch dir).
Every check asserts what a user would notice; the first failure raises."""
import hashlib, io, json, os, subprocess, sys, time, urllib.request, urllib.error

import datetime, hmac
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["STRATUS_S3"]
WORK = os.environ["WORK"]


def client(ak, sk, **cfg):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        region_name="gd-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **cfg),
    )


A = client(os.environ["AK_A"], os.environ["SK_A"])
B = client(os.environ["AK_B"], os.environ["SK_B"])


def error_code(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{fn.__name__} succeeded; an error was expected")


def sign(key, msg): return hmac.new(key, msg.encode(), hashlib.sha256).digest()
def sha(b): return hashlib.sha256(b).hexdigest()

def sign_put(headers, ak, sk, bucket, key, amz_date, date, region, scope):
    """Add a SigV4 Authorization header to a PUT of /bucket/key whose x-amz-content-sha256
    is already set; returns the signing key and the (seed) signature."""
    signed = sorted(headers)
    canon = "\n".join(["PUT", f"/{bucket}/{key}", "", "".join(f"{h}:{headers[h]}\n" for h in signed),
                       ";".join(signed), headers["x-amz-content-sha256"]])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, sha(canon.encode())])
    k = sign(sign(sign(sign(("AWS4" + sk).encode(), date), region), "s3"), "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={';'.join(signed)}, "
                                f"Signature={sig}")
    return k, sig


def chunked_put(endpoint, ak, sk, bucket, key, data, region="gd-1", chunk=64 * 1024, tamper=False):
    """PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD: every chunk signed, chained from the seed."""
    u = urlparse(endpoint)
    host = u.netloc
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{date}/{region}/s3/aws4_request"
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    # Encoded length: each chunk "hex;chunk-signature=<64>\r\n<data>\r\n".
    enc_len = sum(len(f"{len(c):x};chunk-signature=".encode()) + 64 + 2 + len(c) + 2 for c in chunks)
    headers = {
        "host": host, "x-amz-date": amz_date,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
        "content-length": str(enc_len),
    }
    k, seed = sign_put(headers, ak, sk, bucket, key, amz_date, date, region, scope)
    body, prev = b"", seed
    for c in chunks:
        csts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, sha(b""), sha(c)])
        sig = hmac.new(k, csts.encode(), hashlib.sha256).hexdigest()
        body += f"{len(c):x};chunk-signature={sig}\r\n".encode() + c + b"\r\n"
        prev = sig
    assert len(body) == enc_len
    if tamper:
        # Flip a byte inside the second chunk's data, after it was signed.
        i = body.index(b"\r\n", body.index(b"\r\n", 0) + 2 + chunk) + 2
        i = body.index(b"\r\n", i) + 10
        body = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request("PUT", f"/{bucket}/{key}", body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


def trailer_put(endpoint, ak, sk, bucket, key, data, crc, region="gd-1", chunk=64 * 1024):
    """PUT with STREAMING-UNSIGNED-PAYLOAD-TRAILER, as the SDKs stream a file: plain chunks,
    then an x-amz-checksum-crc32 trailer carrying `crc`."""
    u = urlparse(endpoint)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{date}/{region}/s3/aws4_request"
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    body = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    body += b"0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n".encode() + b"\r\n"
    headers = {
        "host": u.netloc, "x-amz-date": amz_date,
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32", "content-length": str(len(body)),
    }
    sign_put(headers, ak, sk, bucket, key, amz_date, date, region, scope)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    conn.request("PUT", f"/{bucket}/{key}", body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


T0 = time.time()


def step(name):
    print(f"-- {time.time() - T0:6.1f}s {name}", flush=True)


if sys.argv[1:] == ["lifecycle-setup"]:
    A.create_bucket(Bucket="dept-a-logs")
    A.put_object(Bucket="dept-a-logs", Key="tmp/a.log", Body=b"1")
    A.put_object(Bucket="dept-a-logs", Key="keep/b.log", Body=b"2")
    A.create_multipart_upload(Bucket="dept-a-logs", Key="tmp/unfinished")
    A.put_bucket_lifecycle_configuration(Bucket="dept-a-logs", LifecycleConfiguration={"Rules": [
        {"ID": "expire-tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 30},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]})
    rules = A.get_bucket_lifecycle_configuration(Bucket="dept-a-logs")["Rules"]
    assert rules[0]["ID"] == "expire-tmp" and rules[0]["Expiration"]["Days"] == 30, rules
    A.put_bucket_lifecycle_configuration(Bucket="dept-a-archive", LifecycleConfiguration={"Rules": [
        {"ID": "old-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 10}}]})
    assert error_code(A.put_bucket_lifecycle_configuration, Bucket="dept-a-logs", LifecycleConfiguration={"Rules": [
        {"ID": "nothing", "Status": "Enabled", "Filter": {"Prefix": "x/"}}]}) == "InvalidRequest"
    assert len(A.list_object_versions(Bucket="dept-a-archive", Prefix="policy.doc")["Versions"]) == 2
    print("lifecycle set up")
    sys.exit(0)

if sys.argv[1:] == ["lifecycle-check"]:
    # Run after the test applied the rules with a clock 31 days ahead.
    assert error_code(A.head_object, Bucket="dept-a-logs", Key="tmp/a.log") in ("404", "NoSuchKey")
    A.head_object(Bucket="dept-a-logs", Key="keep/b.log")
    assert A.list_multipart_uploads(Bucket="dept-a-logs").get("Uploads", []) == []
    vs = A.list_object_versions(Bucket="dept-a-archive", Prefix="policy.doc")["Versions"]
    assert len(vs) == 1 and vs[0]["IsLatest"], vs
    assert A.get_object(Bucket="dept-a-archive", Key="policy.doc")["Body"].read() == b"v2"
    print("lifecycle checks passed")
    sys.exit(0)

if sys.argv[1:] == ["bucket-quota"]:
    # Run after the test set the bucket's own object limit to what it holds plus one.
    A.put_object(Bucket="dept-a", Key="quota/three", Body=b"3")
    assert error_code(A.put_object, Bucket="dept-a", Key="quota/four", Body=b"4") == "QuotaExceeded"
    print("bucket quota checks passed")
    sys.exit(0)

if sys.argv[1:] == ["quota"]:
    # Run after the test set project A's object quota to what it holds plus one.
    A.put_object(Bucket="dept-a", Key="quota/one", Body=b"1")
    assert error_code(A.put_object, Bucket="dept-a", Key="quota/two", Body=b"2") == "QuotaExceeded"
    assert error_code(A.head_object, Bucket="dept-a", Key="quota/two") in ("404", "NoSuchKey")
    print("quota checks passed")
    sys.exit(0)

step("buckets: create, head, list, location, names")
A.create_bucket(Bucket="dept-a", CreateBucketConfiguration={"LocationConstraint": "gd-1"})
A.head_bucket(Bucket="dept-a")
assert [b["Name"] for b in A.list_buckets()["Buckets"]] == ["dept-a"]
assert A.get_bucket_location(Bucket="dept-a")["LocationConstraint"] == "gd-1"
assert error_code(A.create_bucket, Bucket="dept-a") == "BucketAlreadyOwnedByYou"
assert error_code(B.create_bucket, Bucket="dept-a") == "BucketAlreadyExists"
assert error_code(A.create_bucket, Bucket="Bad_Name") == "InvalidBucketName"
B.create_bucket(Bucket="dept-b")
assert [b["Name"] for b in B.list_buckets()["Buckets"]] == ["dept-b"]

step("objects: put with metadata and MD5, get, range, head, conditional")
body = b"hello, government cloud\n" * 1000
md5 = hashlib.md5(body).hexdigest()
import base64
r = A.put_object(
    Bucket="dept-a", Key="docs/readme.txt", Body=body, ContentType="text/plain",
    Metadata={"owner": "zhangsan"}, ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
)
assert r["ETag"] == f'"{md5}"', r["ETag"]
g = A.get_object(Bucket="dept-a", Key="docs/readme.txt")
assert g["Body"].read() == body
assert g["ContentType"] == "text/plain" and g["Metadata"] == {"owner": "zhangsan"}
assert A.get_object(Bucket="dept-a", Key="docs/readme.txt", Range="bytes=7-22")["Body"].read() == body[7:23]
assert A.get_object(Bucket="dept-a", Key="docs/readme.txt", Range="bytes=-5")["Body"].read() == body[-5:]
h = A.head_object(Bucket="dept-a", Key="docs/readme.txt")
assert h["ContentLength"] == len(body)
assert error_code(A.get_object, Bucket="dept-a", Key="docs/readme.txt", IfNoneMatch=f'"{md5}"') in ("304", "NotModified")
assert error_code(A.get_object, Bucket="dept-a", Key="docs/readme.txt", IfMatch='"nope"') == "PreconditionFailed"
assert error_code(A.get_object, Bucket="dept-a", Key="missing") == "NoSuchKey"

step("integrity: a wrong Content-MD5 or checksum stores nothing")
bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
assert error_code(A.put_object, Bucket="dept-a", Key="bad", Body=b"data", ContentMD5=bad_md5) == "BadDigest"
assert error_code(A.head_object, Bucket="dept-a", Key="bad") in ("404", "NoSuchKey")
# (CRC32C needs awscrt on the client; CRC32 and SHA256 are plain botocore.)
r = A.put_object(Bucket="dept-a", Key="summed", Body=b"123456789", ChecksumAlgorithm="CRC32")
assert r["ChecksumCRC32"] == "y/Q5Jg==", r
g = A.get_object(Bucket="dept-a", Key="summed", ChecksumMode="ENABLED")
assert g["ChecksumCRC32"] == "y/Q5Jg==" and g["Body"].read() == b"123456789"
assert error_code(A.put_object, Bucket="dept-a", Key="bad2", Body=b"abc",
                  ChecksumSHA256=base64.b64encode(hashlib.sha256(b"abd").digest()).decode()) == "BadDigest"

step("copy with metadata directive")
A.copy_object(Bucket="dept-a", Key="docs/copy.txt", CopySource={"Bucket": "dept-a", "Key": "docs/readme.txt"})
assert A.head_object(Bucket="dept-a", Key="docs/copy.txt")["Metadata"] == {"owner": "zhangsan"}
A.copy_object(Bucket="dept-a", Key="docs/copy2.txt", CopySource="dept-a/docs/readme.txt",
              MetadataDirective="REPLACE", Metadata={"owner": "lisi"}, ContentType="text/markdown")
h = A.head_object(Bucket="dept-a", Key="docs/copy2.txt")
assert h["Metadata"] == {"owner": "lisi"} and h["ContentType"] == "text/markdown"

step("listing: prefix, delimiter, paging")
for i in range(25):
    A.put_object(Bucket="dept-a", Key=f"logs/2026/{i:02}.log", Body=b"x" * i)
A.put_object(Bucket="dept-a", Key="logs/2027/01.log", Body=b"y")
top = A.list_objects_v2(Bucket="dept-a", Delimiter="/")
assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["docs/", "logs/"], top.get("CommonPrefixes")
assert [o["Key"] for o in top["Contents"]] == ["summed"]
years = A.list_objects_v2(Bucket="dept-a", Prefix="logs/", Delimiter="/")
assert [p["Prefix"] for p in years["CommonPrefixes"]] == ["logs/2026/", "logs/2027/"]
keys, token = [], None
while True:
    kw = {"ContinuationToken": token} if token else {}
    page = A.list_objects_v2(Bucket="dept-a", Prefix="logs/2026/", MaxKeys=7, **kw)
    keys += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
assert keys == [f"logs/2026/{i:02}.log" for i in range(25)], keys
v1 = A.list_objects(Bucket="dept-a", Prefix="logs/", Delimiter="/", MaxKeys=1)
assert v1["IsTruncated"] and v1["NextMarker"] == "logs/2026/"
v1b = A.list_objects(Bucket="dept-a", Prefix="logs/", Delimiter="/", Marker=v1["NextMarker"])
assert [p["Prefix"] for p in v1b["CommonPrefixes"]] == ["logs/2027/"]
assert A.list_objects_v2(Bucket="dept-a", StartAfter="logs/2026/23.log", Prefix="logs/")["KeyCount"] == 2

step("object tagging")
A.put_object(Bucket="dept-a", Key="tagged", Body=b"t", Tagging="class=internal&dept=a")
assert {t["Key"]: t["Value"] for t in A.get_object_tagging(Bucket="dept-a", Key="tagged")["TagSet"]} == {"class": "internal", "dept": "a"}
A.put_object_tagging(Bucket="dept-a", Key="tagged", Tagging={"TagSet": [{"Key": "class", "Value": "public"}]})
assert A.get_object_tagging(Bucket="dept-a", Key="tagged")["TagSet"] == [{"Key": "class", "Value": "public"}]
A.delete_object_tagging(Bucket="dept-a", Key="tagged")
assert A.get_object_tagging(Bucket="dept-a", Key="tagged")["TagSet"] == []
A.delete_object(Bucket="dept-a", Key="tagged")

step("batch delete")
res = A.delete_objects(Bucket="dept-a", Delete={"Objects": [{"Key": f"logs/2026/{i:02}.log"} for i in range(10)]})
assert len(res["Deleted"]) == 10
assert A.list_objects_v2(Bucket="dept-a", Prefix="logs/2026/")["KeyCount"] == 15

step("multipart: upload, list parts, complete (ETag md5-of-md5s-N), too-small part, wrong order")
part = 5 * 1024 * 1024
data = os.urandom(part * 2 + 12345)
mp = A.create_multipart_upload(Bucket="dept-a", Key="big/blob.bin", ContentType="application/x-test")
uid = mp["UploadId"]
etags = []
for n, off in enumerate(range(0, len(data), part), start=1):
    etags.append(A.upload_part(Bucket="dept-a", Key="big/blob.bin", UploadId=uid, PartNumber=n, Body=data[off:off + part])["ETag"])
assert [p["PartNumber"] for p in A.list_parts(Bucket="dept-a", Key="big/blob.bin", UploadId=uid)["Parts"]] == [1, 2, 3]
assert [u["UploadId"] for u in A.list_multipart_uploads(Bucket="dept-a")["Uploads"]] == [uid]
wrong = [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]
assert error_code(A.complete_multipart_upload, Bucket="dept-a", Key="big/blob.bin", UploadId=uid,
                  MultipartUpload={"Parts": wrong}) == "InvalidPartOrder"
bad_etag = [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]
assert error_code(A.complete_multipart_upload, Bucket="dept-a", Key="big/blob.bin", UploadId=uid,
                  MultipartUpload={"Parts": bad_etag}) == "InvalidPart"
done = A.complete_multipart_upload(Bucket="dept-a", Key="big/blob.bin", UploadId=uid,
                                   MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
digests = b"".join(hashlib.md5(data[o:o + part]).digest() for o in range(0, len(data), part))
assert done["ETag"] == f'"{hashlib.md5(digests).hexdigest()}-3"', done["ETag"]
got = A.get_object(Bucket="dept-a", Key="big/blob.bin")
assert got["Body"].read() == data and got["ContentType"] == "application/x-test"
# UploadPartCopy: a new object assembled from ranges of the one just made.
cp = A.create_multipart_upload(Bucket="dept-a", Key="big/copy.bin")["UploadId"]
r1 = A.upload_part_copy(Bucket="dept-a", Key="big/copy.bin", UploadId=cp, PartNumber=1,
                        CopySource={"Bucket": "dept-a", "Key": "big/blob.bin"}, CopySourceRange=f"bytes=0-{part - 1}")
r2 = A.upload_part_copy(Bucket="dept-a", Key="big/copy.bin", UploadId=cp, PartNumber=2,
                        CopySource={"Bucket": "dept-a", "Key": "big/blob.bin"}, CopySourceRange=f"bytes={2 * part}-{len(data) - 1}")
A.complete_multipart_upload(Bucket="dept-a", Key="big/copy.bin", UploadId=cp, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
assert A.get_object(Bucket="dept-a", Key="big/copy.bin")["Body"].read() == data[:part] + data[2 * part:]
A.delete_object(Bucket="dept-a", Key="big/copy.bin")
small = A.create_multipart_upload(Bucket="dept-a", Key="small")["UploadId"]
e1 = A.upload_part(Bucket="dept-a", Key="small", UploadId=small, PartNumber=1, Body=b"a" * 100)["ETag"]
e2 = A.upload_part(Bucket="dept-a", Key="small", UploadId=small, PartNumber=2, Body=b"b" * 100)["ETag"]
assert error_code(A.complete_multipart_upload, Bucket="dept-a", Key="small", UploadId=small,
                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}) == "EntityTooSmall"
A.abort_multipart_upload(Bucket="dept-a", Key="small", UploadId=small)
assert error_code(A.list_parts, Bucket="dept-a", Key="small", UploadId=small) == "NoSuchUpload"

step("versioning: ids, get by version, delete markers, list versions")
A.create_bucket(Bucket="dept-a-archive")
A.put_bucket_versioning(Bucket="dept-a-archive", VersioningConfiguration={"Status": "Enabled"})
assert A.get_bucket_versioning(Bucket="dept-a-archive")["Status"] == "Enabled"
v1 = A.put_object(Bucket="dept-a-archive", Key="policy.doc", Body=b"v1")["VersionId"]
v2 = A.put_object(Bucket="dept-a-archive", Key="policy.doc", Body=b"v2")["VersionId"]
assert v1 != v2
assert A.get_object(Bucket="dept-a-archive", Key="policy.doc")["Body"].read() == b"v2"
assert A.get_object(Bucket="dept-a-archive", Key="policy.doc", VersionId=v1)["Body"].read() == b"v1"
d = A.delete_object(Bucket="dept-a-archive", Key="policy.doc")
assert d["DeleteMarker"] is True
assert error_code(A.get_object, Bucket="dept-a-archive", Key="policy.doc") == "NoSuchKey"
vs = A.list_object_versions(Bucket="dept-a-archive")
assert [v["VersionId"] for v in vs["Versions"]] == [v2, v1]
assert len(vs["DeleteMarkers"]) == 1 and vs["DeleteMarkers"][0]["IsLatest"]
A.delete_object(Bucket="dept-a-archive", Key="policy.doc", VersionId=d["VersionId"])
assert A.get_object(Bucket="dept-a-archive", Key="policy.doc")["Body"].read() == b"v2"

step("presigned GET, and an expired one")
url = A.generate_presigned_url("get_object", Params={"Bucket": "dept-a", "Key": "docs/readme.txt"}, ExpiresIn=60)
assert urllib.request.urlopen(url).read() == body
url = A.generate_presigned_url("get_object", Params={"Bucket": "dept-a", "Key": "docs/readme.txt"}, ExpiresIn=1)
time.sleep(2)
try:
    urllib.request.urlopen(url)
    raise AssertionError("an expired presigned URL worked")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code

step("tenants: project B's key cannot read, write or list project A's bucket")
assert error_code(B.list_objects_v2, Bucket="dept-a") == "AccessDenied"
assert error_code(B.get_object, Bucket="dept-a", Key="docs/readme.txt") == "AccessDenied"
assert error_code(B.put_object, Bucket="dept-a", Key="x", Body=b"x") == "AccessDenied"
assert error_code(B.delete_bucket, Bucket="dept-a") == "AccessDenied"
bad = client(os.environ["AK_A"], "wrong-secret")
assert error_code(bad.list_buckets) == "SignatureDoesNotMatch"
anon = boto3.client("s3", endpoint_url=ENDPOINT, region_name="gd-1",
                    config=Config(signature_version=__import__("botocore").UNSIGNED, s3={"addressing_style": "path"}))
assert error_code(anon.get_object, Bucket="dept-a", Key="docs/readme.txt") == "AccessDenied"

step("bucket policy: grant project B's user read on public/*, deny everyone secret/*")
A.put_object(Bucket="dept-a", Key="public/notice.txt", Body=b"open data")
A.put_object(Bucket="dept-a", Key="secret/plan.txt", Body=b"classified")
policy = {"Version": "2012-10-17", "Statement": [
    {"Sid": "ShareNotices", "Effect": "Allow", "Principal": {"AWS": [os.environ["USER_B"]]},
     "Action": "s3:GetObject", "Resource": "arn:aws:s3:::dept-a/public/*"},
    {"Sid": "LockSecrets", "Effect": "Deny", "Principal": "*",
     "Action": "s3:GetObject", "Resource": "arn:aws:s3:::dept-a/secret/*"}]}
A.put_bucket_policy(Bucket="dept-a", Policy=json.dumps(policy))
assert json.loads(A.get_bucket_policy(Bucket="dept-a")["Policy"]) == policy
assert B.get_object(Bucket="dept-a", Key="public/notice.txt")["Body"].read() == b"open data"
assert error_code(B.get_object, Bucket="dept-a", Key="docs/readme.txt") == "AccessDenied"
assert error_code(A.get_object, Bucket="dept-a", Key="secret/plan.txt") == "AccessDenied"
assert error_code(A.put_bucket_policy, Bucket="dept-a", Policy='{"Statement": [{"Effect": "Maybe"}]}') == "MalformedPolicy"
assert error_code(B.put_bucket_policy, Bucket="dept-a", Policy=json.dumps(policy)) == "AccessDenied"
A.delete_bucket_policy(Bucket="dept-a")
assert error_code(A.get_bucket_policy, Bucket="dept-a") == "NoSuchBucketPolicy"
assert A.get_object(Bucket="dept-a", Key="secret/plan.txt")["Body"].read() == b"classified"

step("ACLs: a public-read object is readable anonymously; the rest is not")
A.put_object_acl(Bucket="dept-a", Key="public/notice.txt", ACL="public-read")
grants = A.get_object_acl(Bucket="dept-a", Key="public/notice.txt")["Grants"]
assert any(g["Grantee"].get("URI", "").endswith("AllUsers") and g["Permission"] == "READ" for g in grants), grants
assert anon.get_object(Bucket="dept-a", Key="public/notice.txt")["Body"].read() == b"open data"
assert error_code(anon.get_object, Bucket="dept-a", Key="secret/plan.txt") == "AccessDenied"
assert error_code(anon.put_object, Bucket="dept-a", Key="public/x", Body=b"x") == "AccessDenied"

step("raw requests: virtual-host addressing, malformed XML")
import http.client
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
port = int(ENDPOINT.rsplit(":", 1)[1])
def raw(method, url, body=b"", headers=None):
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    req.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(os.environ["AK_A"], os.environ["SK_A"]), "s3", "gd-1").add_auth(req)
    req.headers["Host"] = url.split("/")[2]  # what was signed, whatever address is dialled
    conn = http.client.HTTPConnection("127.0.0.1", port)
    path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
    conn.request(method, "/" + path, body=body, headers=dict(req.headers))
    r = conn.getresponse()
    return r.status, r.read()
st, data = raw("GET", f"http://dept-a.s3.gd.gov.test:{port}/docs/readme.txt")
assert st == 200 and data == body, (st, data[:200])
garbage = b"<Delete><Object><Key>docs/readme.txt</Key></Objec"
st, data = raw("POST", f"http://127.0.0.1:{port}/dept-a?delete", garbage,
               {"Content-MD5": base64.b64encode(hashlib.md5(garbage).digest()).decode()})
assert st == 400 and b"MalformedXML" in data, (st, data)
A.head_object(Bucket="dept-a", Key="docs/readme.txt")

step("chunked payload signing (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)")
payload = os.urandom(200_000)
st, _ = chunked_put(ENDPOINT, os.environ["AK_A"], os.environ["SK_A"], "dept-a", "chunked/ok", payload)
assert st == 200, st
assert A.get_object(Bucket="dept-a", Key="chunked/ok")["Body"].read() == payload
st, _ = chunked_put(ENDPOINT, os.environ["AK_A"], os.environ["SK_A"], "dept-a", "chunked/tampered", payload, tamper=True)
assert st == 403, st
assert error_code(A.head_object, Bucket="dept-a", Key="chunked/tampered") in ("404", "NoSuchKey")
A.delete_object(Bucket="dept-a", Key="chunked/ok")

step("checksum trailers (STREAMING-UNSIGNED-PAYLOAD-TRAILER): verified before the object exists")
import zlib
good = base64.b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
st, data = trailer_put(ENDPOINT, os.environ["AK_A"], os.environ["SK_A"], "dept-a", "trailer/ok", payload, good)
assert st == 200, (st, data)
h = A.head_object(Bucket="dept-a", Key="trailer/ok", ChecksumMode="ENABLED")
assert h.get("ChecksumCRC32") == good, h
wrong = base64.b64encode((zlib.crc32(payload) ^ 1).to_bytes(4, "big")).decode()
st, data = trailer_put(ENDPOINT, os.environ["AK_A"], os.environ["SK_A"], "dept-a", "trailer/bad", payload, wrong)
assert st == 400 and b"<Code>BadDigest</Code>" in data, (st, data)
assert error_code(A.head_object, Bucket="dept-a", Key="trailer/bad") in ("404", "NoSuchKey")
A.delete_object(Bucket="dept-a", Key="trailer/ok")

step("delete: a bucket with objects is refused")
assert error_code(A.delete_bucket, Bucket="dept-a") == "BucketNotEmpty"
B.put_object(Bucket="dept-b", Key="only", Body=b"1")
B.delete_object(Bucket="dept-b", Key="only")
B.delete_bucket(Bucket="dept-b")
assert error_code(B.head_bucket, Bucket="dept-b") in ("404", "NoSuchBucket")

step("aws CLI: cp, ls, sync, rm")
env = dict(os.environ, AWS_ACCESS_KEY_ID=os.environ["AK_A"], AWS_SECRET_ACCESS_KEY=os.environ["SK_A"],
           AWS_DEFAULT_REGION="gd-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
def aws(*args):
    out = subprocess.run(["aws", "--endpoint-url", ENDPOINT, "s3", *args], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout
src = os.path.join(WORK, "cli")
os.makedirs(os.path.join(src, "sub"), exist_ok=True)
for n in ("a.txt", "b.txt", "sub/c.txt"):
    with open(os.path.join(src, n), "w") as f:
        f.write(n * 100)
big = os.path.join(WORK, "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(20 * 1024 * 1024))
aws("cp", big, "s3://dept-a/cli/big.bin")
aws("sync", src, "s3://dept-a/cli/tree")
listing = aws("ls", "s3://dept-a/cli/", "--recursive")
assert "cli/tree/sub/c.txt" in listing and "cli/big.bin" in listing, listing
aws("cp", "s3://dept-a/cli/big.bin", os.path.join(WORK, "back.bin"))
assert open(big, "rb").read() == open(os.path.join(WORK, "back.bin"), "rb").read()
aws("rm", "s3://dept-a/cli/", "--recursive")
assert "cli/" not in aws("ls", "s3://dept-a/")
step("s3cmd: put, ls, get, del")
host = ENDPOINT.split("://", 1)[1]
cfg = os.path.join(WORK, "s3cmd.cfg")
with open(cfg, "w") as f:
    f.write(f"""[default]
access_key = {os.environ["AK_A"]}
secret_key = {os.environ["SK_A"]}
host_base = {host}
host_bucket = {host}
use_https = False
signature_v2 = False
bucket_location = gd-1
""")
def s3cmd(*args):
    out = subprocess.run(["s3cmd", "-c", cfg, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout
s3cmd("put", os.path.join(src, "a.txt"), "s3://dept-a/s3cmd/a.txt")
assert "s3://dept-a/s3cmd/a.txt" in s3cmd("ls", "s3://dept-a/s3cmd/")
s3cmd("get", "--force", "s3://dept-a/s3cmd/a.txt", os.path.join(WORK, "a.back"))
assert open(os.path.join(WORK, "a.back")).read() == "a.txt" * 100
s3cmd("del", "s3://dept-a/s3cmd/a.txt")
assert "a.txt" not in s3cmd("ls", "s3://dept-a/s3cmd/")
print("all S3 client checks passed")
