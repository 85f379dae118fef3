"""Accounts: sign-up by e-mailed PIN, login, tokens, password reset and change, deletion."""

from __future__ import annotations

from api.endpoints import DbRequest, ReadRequest, Reply, Router, SlowRequest, UserRequest
from api.functions import ROUTE_PREFIX
from api.schemas.auth import (
    AccountDeletion,
    LoginRequest,
    LogoutRequest,
    Message,
    PasswordChange,
    PasswordResetConfirmation,
    PinRequest,
    RefreshRequest,
    SignupConfirmation,
    TokenBundle,
    UserPublic,
)
from api.services import auth
from api.utils.http import client_address

router = Router("auth")

# One body whatever the e-mail, so the answer never tells whether an account exists.
PIN_SENT = "Check your e-mail: we have sent you a PIN or what to do next."
RESET_PIN_SENT = "Check your e-mail: we have sent you a PIN to reset your password."
ACCOUNT_LOCATION = f"/{ROUTE_PREFIX}/me"  # where a new account lives (201 Location)


@router.operation(
    "POST",
    "request_pin",
    summary="E-mail a sign-up PIN",
    description="Answers the same for new and registered e-mails; a registered one gets a "
    "'you already have an account' e-mail instead of a PIN.",
    response=Message,
    status=202,
    errors=(429, 503),
)
def request_pin(request: DbRequest[PinRequest]) -> Message:
    auth.request_signup_pin(
        session=request.session, email=request.body.email, client=client_address(request.http)
    )
    return Message(message=PIN_SENT)


@router.operation(
    "POST",
    "confirm_signup",
    summary="Create the account with the e-mailed PIN",
    response=TokenBundle,
    status=201,
    response_headers=("Location",),
    errors=(403, 409, 429),
)
def confirm_signup(request: DbRequest[SignupConfirmation]) -> Reply:
    body = request.body
    tokens = auth.confirm_signup(
        session=request.session,
        email=body.email,
        password=body.password,
        pin=body.pin,
        client=client_address(request.http),
    )
    return Reply(tokens, headers={"Location": ACCOUNT_LOCATION})


@router.operation(
    "POST",
    "login",
    summary="Log in with e-mail and password",
    response=TokenBundle,
    errors=(401, 429),
)
def login(request: SlowRequest[LoginRequest]) -> auth.IssuedTokens:
    return auth.login(
        unit_of_work=request.unit_of_work,
        email=request.body.email,
        password=request.body.password,
        client=client_address(request.http),
    )


@router.operation(
    "POST",
    "auth/refresh",
    summary="Swap a refresh token for new tokens (the old one stops working)",
    response=TokenBundle,
    errors=(401,),
)
def refresh(request: DbRequest[RefreshRequest]) -> auth.IssuedTokens:
    return auth.refresh_session(session=request.session, refresh_token=request.body.refresh_token)


@router.operation(
    "POST",
    "logout",
    summary="End this session, the one of a refresh token, or every session (all: true)",
    description="With no body (or neither field) the session this access token was issued "
    "with ends; with `refresh_token`, that token's session; with `all: true`, every session "
    "of the account, access tokens included.",
    body_required=False,
)
def logout(request: UserRequest[LogoutRequest]) -> None:
    auth.logout(
        session=request.session,
        caller=request.caller,
        refresh_token=request.body.refresh_token,
        everywhere=request.body.all,
    )


@router.operation(
    "POST",
    "request_password_reset_pin",
    summary="E-mail a password reset PIN",
    description="Answers the same whether or not an account uses the e-mail.",
    response=Message,
    status=202,
    errors=(429, 503),
)
def request_password_reset_pin(request: DbRequest[PinRequest]) -> Message:
    auth.request_password_reset_pin(
        session=request.session, email=request.body.email, client=client_address(request.http)
    )
    return Message(message=RESET_PIN_SENT)


@router.operation(
    "POST",
    "confirm_password_reset",
    summary="Set a new password with the e-mailed PIN; every older token stops working",
    response=TokenBundle,
    errors=(403, 429),
)
def confirm_password_reset(request: DbRequest[PasswordResetConfirmation]) -> auth.IssuedTokens:
    body = request.body
    return auth.confirm_password_reset(
        session=request.session,
        email=body.email,
        pin=body.pin,
        new_password=body.new_password,
        client=client_address(request.http),
    )


@router.operation(
    "POST",
    "change_password",
    summary="Change the password; every other session ends",
    response=TokenBundle,
    errors=(403, 429),
)
def change_password(request: UserRequest[PasswordChange]) -> auth.IssuedTokens:
    return auth.change_password(
        session=request.session,
        user=request.user,
        current_password=request.body.current_password,
        new_password=request.body.new_password,
    )


@router.operation("GET", "me", summary="The logged-in account", response=UserPublic)
def me(request: ReadRequest) -> auth.Account:
    return request.user


@router.operation(
    "DELETE",
    "me",
    summary="Delete the account and everything it owns",
    errors=(403, 429),
)
def delete_me(request: UserRequest[AccountDeletion]) -> None:
    auth.delete_account(session=request.session, user=request.user, password=request.body.password)
