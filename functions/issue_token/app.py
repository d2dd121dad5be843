"""POST /auth/token: email or username and password in, a signed access token out."""

from typing import Annotated

from blog import auth, services
from blog.http import client_address, error_responses, http_handler, make_app
from blog.schemas import TokenOut, TokenRequest

from aws_lambda_powertools.event_handler.openapi.params import Body

app = make_app()


@app.post(
    "/auth/token",
    operation_id="issue_token",
    summary="Sign in",
    tags=["auth"],
    responses=error_responses(401, 422, 429),
)
def issue_token(body: Annotated[TokenRequest, Body()]) -> TokenOut:
    client = services.sign_in_client(client_address(app))
    user = services.authenticate(login=body.login, password=body.password, client=client)
    token, expires_in = auth.issue_token(user.id, user.token_version)
    return TokenOut(access_token=token, expires_in=expires_in)


lambda_handler = http_handler(app)
